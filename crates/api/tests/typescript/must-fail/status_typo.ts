// expect TS2367: a misspelt status compared with the enum never matches.
import type { components } from "../generated/api";
export const isLive = (c: components["schemas"]["ConnectionView"]): boolean => c.status === "liv";

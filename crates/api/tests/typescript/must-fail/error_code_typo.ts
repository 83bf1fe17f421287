// expect TS2367: error codes are a closed set.
import type { components } from "../generated/api";
export const isInvalid = (e: components["schemas"]["ErrorBody"]): boolean => e.error.code === "validation_error";

// expect TS2339: a change key has GitLab's identity fields, not anything.
import type { components } from "../generated/api";
export const title = (c: components["schemas"]["ChangeView"]): string | undefined => c.key.title;

// expect TS2339: progress records have named fields; one the schema lacks does not compile.
import type { components } from "../generated/api";
export const notes = (p: components["schemas"]["ProgressView"]): number => p.records.notes;

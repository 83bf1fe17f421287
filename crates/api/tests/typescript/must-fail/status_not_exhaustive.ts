// expect TS2345: a switch that forgets a status does not reach `never`.
import type { components } from "../generated/api";
type Status = components["schemas"]["Status"];
const never = (value: never): never => {
  throw new Error(String(value));
};
export function label(status: Status): string {
  switch (status) {
    case "pending":
    case "validating":
    case "installing_hooks":
    case "backfilling":
    case "live":
    case "needs_reauth":
    case "invalid":
    case "failed":
      return status;
    default:
      return never(status);
  }
}

import { PERMISSION_ROLES, permissionsConf, rolePermissions, type PermissionRole } from "../../runtime/nats/permissions.js";
import { UsageError } from "../errors.js";
import { print, printJson } from "../output.js";
import type { CommandContext } from "../wf.js";

/**
 * `wf permissions --role R`: the NATS publish/subscribe allow lists of a jetflow role, as a
 * nats-server `permissions` block (paste it into a user of `authorization { users: [...] }`) or
 * as JSON (for nsc or a JWT). Needs no connection: the lists come from the names alone.
 */
export async function permissionsCommand(ctx: CommandContext): Promise<number> {
  const role = ctx.values.role;
  if (typeof role !== "string" || !(PERMISSION_ROLES as readonly string[]).includes(role)) {
    throw new UsageError(`--role must be one of ${PERMISSION_ROLES.join(", ")}${role === undefined ? "" : `, got "${String(role)}"`}`, "Usage: wf permissions --role client|worker|orchestrator|runtime|admin [--namespace NS] [--activities a,b] [--format conf|json]");
  }
  const format = ctx.values.format ?? "conf";
  if (format !== "conf" && format !== "json") throw new UsageError(`--format must be conf or json, got "${String(format)}"`);
  const activities = typeof ctx.values.activities === "string" ? ctx.values.activities.split(",").map((s) => s.trim()).filter(Boolean) : [];
  const namespace = typeof ctx.values.namespace === "string" ? ctx.values.namespace : "";
  const permissions = rolePermissions({ role: role as PermissionRole, namespace, activities });
  if (format === "json") printJson(permissions);
  else print(`# jetflow role ${role}${namespace ? `, namespace "${namespace}"` : ""}${activities.length ? `, activities ${activities.join(", ")}` : ""} (wf permissions)\n${permissionsConf(permissions)}`);
  return 0;
}

/** Common flags (--config, --nats, --namespace) on top of wf.config.json and the environment. */
import { loadConfig, type Config, type ConfigOverrides } from "../runtime/config.js";
import type { CommandContext } from "./wf.js";

export function configFromFlags(ctx: CommandContext, extra: ConfigOverrides = {}): Config {
  const overrides: ConfigOverrides = { ...extra };
  if (typeof ctx.values.nats === "string") overrides.nats = { servers: ctx.values.nats.split(",") };
  if (typeof ctx.values.namespace === "string") overrides.namespace = ctx.values.namespace;
  return loadConfig({
    ...(typeof ctx.values.config === "string" ? { file: ctx.values.config } : {}),
    overrides,
  });
}

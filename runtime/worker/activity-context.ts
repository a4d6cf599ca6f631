/** The `ctx` every activity call receives. */
import type { Logger } from "../logger.js";
import type { TaskMessage } from "../protocol.js";
import type { ActivityContext } from "../workflow-api.js";

/** `attempt.signal` is read only if the activity reads ctx.signal (worker/attempt.ts). */
export function createActivityContext(task: TaskMessage, attempt: { readonly signal: AbortSignal }, heartbeat: (details?: unknown) => void, logger: Logger): ActivityContext {
  // Made on first use: most activities never log, and a child logger per task is measurable.
  let child: Logger | undefined;
  const log = () => (child ??= logger.child({ component: "activity", workflowId: task.workflowId, step: task.step, attempt: task.attempt }));
  return {
    workflowId: task.workflowId,
    workflow: task.workflow,
    activityId: task.step,
    activityType: task.activity,
    attempt: task.attempt,
    // A later run (continue-as-new, a reused id) reuses step names: its key names the run, so an
    // external system that deduplicates by it does not take run 2's charge for run 1's.
    idempotencyKey: task.run && task.run > 1 ? `${task.workflowId}/r${task.run}/${task.step}` : `${task.workflowId}/${task.step}`,
    get signal() {
      return attempt.signal;
    },
    heartbeat,
    log: {
      debug: (m, meta) => log().debug(m, meta),
      info: (m, meta) => log().info(m, meta),
      warn: (m, meta) => log().warn(m, meta),
      error: (m, meta) => log().error(m, meta),
    },
  };
}

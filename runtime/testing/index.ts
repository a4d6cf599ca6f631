/** jetflow/testing: test environments with time skipping, activity mocks, and replay tests. Every export is named; types apart. */
export { createTestEnv, DEFAULT_IDLE_TIMEOUT_MS } from "./test-env.js";
export type { ActivityCall, ActivityMock, StepTimelineEntry, TestEnv, TestEnvOptions } from "./test-env.js";
export { createTestClock, DEFAULT_TEST_MAX_PARK_MS } from "./clock.js";
export type { TestClock } from "./clock.js";
export type { EngineSnapshot } from "./idle.js";
export { replayHistory, replayHistories } from "./replay.js";
export type { ReplayHistoryOptions, ReplayResult } from "./replay.js";
export { HISTORY_FORMAT, HISTORY_FORMAT_VERSION, parseWorkflowHistory, toWorkflowHistory } from "../journal/history-file.js";
export type { WorkflowHistory } from "../journal/history-file.js";
export { natsServerBinary, startNatsServer, NATS_SERVER_INSTALL_HINT } from "./nats-server.js";
export type { TestNats, TestNatsOptions } from "./nats-server.js";
export { NonDeterminismError } from "../errors.js";

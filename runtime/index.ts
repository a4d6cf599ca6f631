/** jetflow's public API. Every export is named; types apart. */
export { createRuntime } from "./runtime.js";
export type { Runtime, RuntimeOptions, RuntimeRole, CodeSource } from "./runtime.js";
export { createClient } from "./client/client.js";
export type { ClientOptions, ListFilter, ListOptions, ListPage, ResultOptions, StartOptions, WorkflowClient, WorkflowHandle, WorkflowSummary } from "./client/client.js";
export type { SearchAttributes, SearchAttributeValue, SearchAttributeType, TypedAttribute, TypedAttributes } from "./visibility/search-attributes.js";
export { loadConfig, configSchema, configKeys, DEFAULT_CONFIG_FILE } from "./config.js";
export type { Config, ConfigOverrides, LoadConfigOptions, NatsConnectionConfig } from "./config.js";
export { createConsoleLogger, silentLogger } from "./logger.js";
export type { Logger, LogLevel, LogMeta } from "./logger.js";
export {
  JetflowError,
  ConfigError,
  ValidationError,
  DefinitionError,
  BundleError,
  ConnectionError,
  WorkflowNotFoundError,
  WorkflowFailedError,
  NonDeterminismError,
  DeterminismViolationError,
  AbortedError,
  CancelledError,
  ActivityTimeoutError,
  ShutdownError,
  QueryError,
  UpdateError,
  CodecError,
} from "./errors.js";
export type { ErrorRecord, JetflowErrorOptions } from "./errors.js";
export { NonRetryableError, ActivityFailure, ChildWorkflowFailure, defineDag, defineWorkflow, defineSchedule } from "./workflow-api.js";
export type { ScheduleDeclaration } from "./workflow-api.js";
export type { ScheduleClient, ScheduleDescription, ScheduleSummary, ScheduleRunView } from "./schedules/client.js";
export type { ScheduleOptions, ScheduleSpec, OverlapPolicy } from "./schedules/spec.js";
export type { ScheduleRecord, ScheduleRun, ScheduleProgress, SkippedTicks, TickMessage } from "./schedules/store.js";
export type {
  ActivityContext,
  ActivityFunction,
  ActivityOptions,
  ActivityProxy,
  ChildHandle,
  ChildOptions,
  ChildWorkflowFunction,
  DagActivity,
  DagDefinition,
  WorkflowContext,
  WorkflowFunction,
  WorkflowOptions,
} from "./workflow-api.js";
export { validateDag } from "./definitions.js";
export type { WorkflowState, StepState, WorkflowStatus, StepStatus, SignalRecord, ChildRef, ParentRef, ParentClosePolicy } from "./state.js";
export { diffStates, watchProgress } from "./observe.js";
export { createAesGcmCodec } from "./payloads/codec.js";
export type { AesGcmCodecOptions, EncodedPayload, PayloadCodec } from "./payloads/codec.js";
export { ENCRYPTED_PLACEHOLDER } from "./payloads/payloads.js";
export type { DescribeOptions } from "./client/client.js";
export type { ProgressEvent } from "./observe.js";
export { buildFunctions } from "./bundle/build.js";
export type { Bundle } from "./bundle/build.js";
export type { DeployReport, Divergence } from "./bundle/deploy.js";
export type { Duration } from "./duration.js";
export type { Clock } from "./timers.js";
export type { RetryPolicy, RetryPolicyInput } from "./retry-policy.js";

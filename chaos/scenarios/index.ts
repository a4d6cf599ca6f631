/** Every chaos scenario, in the order `npm run chaos` runs them (issue 4). */
import type { Scenario } from "../lib/scenario.js";
import { runtimeKills } from "./s01-runtime-kills.js";
import { natsKills } from "./s02-nats-kills.js";
import { clusterNodeLoss } from "./s03-cluster-node-loss.js";
import { heartbeats } from "./s04-heartbeats.js";
import { gracefulShutdown } from "./s05-graceful-shutdown.js";
import { crashLoops } from "./s06-crash-loops.js";
import { duplicates } from "./s07-duplicates.js";
import { crashPoints } from "./s08-crash-points.js";
import { dedupeGap } from "./s09-dedupe-gap.js";
import { pendingDelays } from "./s10-pending-delays.js";

export const SCENARIOS: Scenario[] = [runtimeKills, natsKills, clusterNodeLoss, heartbeats, gracefulShutdown, crashLoops, duplicates, crashPoints, dedupeGap, pendingDelays];

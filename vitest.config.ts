import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: {
    // functions/ imports jetflow's workflow API by package name, as user code does.
    // The example app's tests import the testing kit the same way.
    alias: {
      "jetflow/workflow": fileURLToPath(new URL("./runtime/workflow-api.ts", import.meta.url)),
      "jetflow/testing": fileURLToPath(new URL("./runtime/testing/index.ts", import.meta.url)),
    },
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Test files run in parallel, but each starts real nats-servers: at most 2 files at once.
    fileParallelism: true,
    maxWorkers: 2,
    reporters: ["default"],
  },
});

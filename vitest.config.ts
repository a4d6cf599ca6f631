import { defineConfig } from "vitest/config";

export default defineConfig({
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

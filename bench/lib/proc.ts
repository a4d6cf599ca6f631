/** CPU time and memory of processes, from /proc (Linux). Undefined where /proc is not there. */
import { readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";

const CLOCK_TICKS = 100; // USER_HZ: 100 on every Linux architecture Node supports

/** User + system CPU seconds of a process so far. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS; // utime, stime (fields 14, 15)
  } catch {
    return undefined;
  }
}

/** This process's CPU seconds (user + system). */
export function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** A line of /proc/<pid>/status in MB (VmRSS, VmHWM). */
export function statusMb(pid: number, field: "VmRSS" | "VmHWM"): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    return match ? Number(match[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

export interface MachineInfo {
  cores: number;
  model: string;
  memory_gb: number;
  node: string;
  platform: string;
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    cores: list.length,
    model: list[0]?.model.trim() ?? "unknown",
    memory_gb: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
}

/** CPU seconds of several processes between two points: `const stop = cpuMeter(pids); …; stop()`. */
export function cpuMeter(named: Record<string, number | undefined>): () => Record<string, number> {
  const start: Record<string, number | undefined> = {};
  for (const [name, pid] of Object.entries(named)) start[name] = pid === undefined ? undefined : cpuSeconds(pid);
  const ownStart = ownCpuSeconds();
  const wallStart = performance.now();
  return () => {
    const out: Record<string, number> = {};
    const wall = (performance.now() - wallStart) / 1000;
    for (const [name, pid] of Object.entries(named)) {
      const before = start[name];
      const after = pid === undefined ? undefined : cpuSeconds(pid);
      if (before !== undefined && after !== undefined) out[`${name}_cpu_s`] = Math.round((after - before) * 100) / 100;
    }
    out.bench_process_cpu_s = Math.round((ownCpuSeconds() - ownStart) * 100) / 100;
    out.wall_s = Math.round(wall * 100) / 100;
    return out;
  };
}

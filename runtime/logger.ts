/** Structured logging. One Logger is passed in; nothing imports a global one. */

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

export interface LogMeta {
  component?: string;
  workflowId?: string;
  step?: string;
  attempt?: number;
  [key: string]: unknown;
}

export interface Logger {
  debug(message: string, meta?: LogMeta): void;
  info(message: string, meta?: LogMeta): void;
  warn(message: string, meta?: LogMeta): void;
  error(message: string, meta?: LogMeta): void;
  /** A logger that adds `meta` to every line. */
  child(meta: LogMeta): Logger;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface ConsoleLoggerOptions {
  level?: LogLevel;
  /** Write one JSON object per line instead of text. */
  json?: boolean;
  /** Where lines go; stderr by default so that command output on stdout stays clean. */
  write?: (line: string) => void;
}

export function createConsoleLogger(options: ConsoleLoggerOptions = {}, base: LogMeta = {}): Logger {
  const level = options.level ?? "info";
  const write = options.write ?? ((line: string) => process.stderr.write(line + "\n"));
  const emit = (lvl: LogLevel, message: string, meta?: LogMeta) => {
    if (RANK[lvl] < RANK[level]) return;
    const all = { ...base, ...meta };
    if (options.json) {
      write(JSON.stringify({ time: new Date().toISOString(), level: lvl, message, ...all }));
      return;
    }
    const { component, ...rest } = all;
    const fields = Object.entries(rest)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join(" ");
    write(`${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} ${component ? `[${component}] ` : ""}${message}${fields ? " " + fields : ""}`);
  };
  return {
    debug: (m, meta) => emit("debug", m, meta),
    info: (m, meta) => emit("info", m, meta),
    warn: (m, meta) => emit("warn", m, meta),
    error: (m, meta) => emit("error", m, meta),
    child: (meta) => createConsoleLogger(options, { ...base, ...meta }),
  };
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};

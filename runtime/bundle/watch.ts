/** Watch functions/ and call back once per burst of saves (editors write several events per save). */
import { watch } from "chokidar";

export interface FunctionsWatcher {
  close(): Promise<void>;
}

export function watchFunctions(dir: string, onChange: (paths: string[]) => void, debounceMs = 50): FunctionsWatcher {
  const watcher = watch(dir, { ignoreInitial: true, ignored: (path) => /(^|[/\\])(node_modules|\.git)([/\\]|$)|~$|\.swp$/.test(path) });
  let pending = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  const fire = () => {
    const paths = [...pending];
    pending = new Set();
    onChange(paths);
  };
  watcher.on("all", (_event, path) => {
    pending.add(path);
    clearTimeout(timer);
    timer = setTimeout(fire, debounceMs);
  });
  return {
    async close() {
      clearTimeout(timer);
      await watcher.close();
    },
  };
}

/** Hash routes: #/ (workflows, filters in the query), #/workflows/<id>[?run=N], #/dead-letters, #/deployments. */
import { useEffect, useState } from "preact/hooks";

export interface Route {
  path: string[];
  query: URLSearchParams;
}

export function parseHash(hash: string): Route {
  const text = hash.replace(/^#/, "") || "/";
  const [path = "/", query = ""] = text.split("?", 2);
  return { path: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query) };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseHash(location.hash));
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

export function href(path: string, query?: URLSearchParams): string {
  const q = query && [...query].length ? `?${query}` : "";
  return `#${path}${q}`;
}

export const navigate = (to: string): void => {
  location.hash = to.replace(/^#/, "");
};

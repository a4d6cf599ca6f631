/** The page's side of the JSON API (runtime/ui/api.ts): fetch with the bearer token, coded errors. */

const TOKEN_KEY = "jetflow-ui-token";

/** A token in the address (`?token=`) is kept for the session and taken out of the address bar. */
export function takeTokenFromAddress(): void {
  const url = new URL(location.href);
  const token = url.searchParams.get("token");
  if (token === null) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  url.searchParams.delete("token");
  history.replaceState(null, "", url.pathname + url.search + url.hash);
}

export function setToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

const token = (): string => sessionStorage.getItem(TOKEN_KEY) ?? "";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

async function request<T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (method === "POST") headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, ...(method === "POST" ? { body: JSON.stringify(body ?? {}) } : {}) });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    throw new ApiError(res.status, "WF_UI_BAD_RESPONSE", `the server answered ${res.status} with something that is not JSON`);
  }
  if (!res.ok) {
    const error = (json as { error?: { code: string; message: string; hint?: string } })?.error;
    throw new ApiError(res.status, error?.code ?? "WF_UI_HTTP", error?.message ?? `HTTP ${res.status}`, error?.hint);
  }
  return json as T;
}

export const get = <T>(path: string, params?: URLSearchParams): Promise<T> => request<T>("GET", params && [...params].length ? `${path}?${params}` : path);
export const post = <T>(path: string, body?: unknown): Promise<T> => request<T>("POST", path, body);

/** The event stream's address: EventSource cannot send headers, so the token goes in the query. */
export function eventsUrl(path: string): string {
  return token() ? `${path}?token=${encodeURIComponent(token())}` : path;
}

export const enc = encodeURIComponent;

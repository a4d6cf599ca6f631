/**
 * Dead letters: messages the engine refused (not JSON, unknown workflow type, a bad id, too large,
 * an event that kept failing), newest first, with the reason and the message as it came; replay
 * (publish it again to its subject, once the cause is fixed) or discard, after a confirmation.
 */
import { useEffect, useState } from "preact/hooks";
import { enc, get, post } from "../api.js";
import { ErrorBox, Time } from "../components/common.js";
import { ConfirmDialog } from "../components/confirm.js";
import { href, navigate, type Route } from "../router.js";
import type { DeadLetter } from "../types.js";

export function DeadLettersPage({ route, readOnly, reasons }: { route: Route; readOnly: boolean; reasons: string[] }) {
  const q = route.query;
  const [page, setPage] = useState<{ letters: DeadLetter[]; cursor?: string } | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [open, setOpen] = useState<number | undefined>(undefined);
  const [pending, setPending] = useState<{ letter: DeadLetter; action: "replay" | "discard" } | undefined>(undefined);
  const [notice, setNotice] = useState<string | undefined>(undefined);
  const [reload, setReload] = useState(0);
  const cursors = q.get("cursors")?.split("~").filter(Boolean) ?? [];
  const params = new URLSearchParams();
  if (q.get("reason")) params.set("reason", q.get("reason")!);
  if (cursors.length) params.set("cursor", cursors.at(-1)!);
  const key = params.toString();

  useEffect(() => {
    let stopped = false;
    get<{ letters: DeadLetter[]; cursor?: string }>("/api/dead-letters", new URLSearchParams(key)).then(
      (p) => {
        if (stopped) return;
        setPage(p);
        setError(undefined);
      },
      (err) => !stopped && setError(err),
    );
    return () => {
      stopped = true;
    };
  }, [key, reload]);

  const pageLink = (next: string[]) => {
    const p = new URLSearchParams(q);
    if (next.length) p.set("cursors", next.join("~"));
    else p.delete("cursors");
    return href("/dead-letters", p);
  };

  return (
    <div>
      <div class="page-head">
        <h1>Dead letters</h1>
        <label class="inline">
          Reason{" "}
          <select
            value={q.get("reason") ?? ""}
            onChange={(e) => {
              const v = (e.target as HTMLSelectElement).value;
              navigate(href("/dead-letters", new URLSearchParams(v ? { reason: v } : {})));
            }}
          >
            <option value="">any</option>
            {reasons.map((r) => (
              <option value={r}>{r}</option>
            ))}
          </select>
        </label>
      </div>
      {notice ? <div class="notice">{notice}</div> : null}
      <ErrorBox error={error} />
      <div class="card">
        <table class="list" data-testid="dead-letters">
          <thead>
            <tr>
              <th>#</th>
              <th>When</th>
              <th>Reason</th>
              <th>Workflow</th>
              <th>Message</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {page?.letters.map((l) => (
              <>
                <tr data-seq={l.seq} data-reason={l.reason}>
                  <td>{l.seq}</td>
                  <td>
                    <Time at={l.at} />
                  </td>
                  <td>
                    <span class="badge reason">{l.reason}</span>
                  </td>
                  <td>{l.workflowId ? <a href={`#/workflows/${enc(l.workflowId)}`}>{l.workflowId}</a> : <span class="dim">—</span>}</td>
                  <td class="message">{l.message}</td>
                  <td>
                    <div class="row-actions">
                    <button type="button" onClick={() => setOpen(open === l.seq ? undefined : l.seq)}>
                      {open === l.seq ? "Hide" : "Show"}
                    </button>
                    {readOnly ? null : (
                      <>
                        <button type="button" onClick={() => setPending({ letter: l, action: "replay" })} disabled={l.truncated} title={l.truncated ? "only the first 64 KiB were kept" : "publish it again to its subject"}>
                          Replay…
                        </button>
                        <button type="button" class="danger" onClick={() => setPending({ letter: l, action: "discard" })}>
                          Discard…
                        </button>
                      </>
                    )}
                    </div>
                  </td>
                </tr>
                {open === l.seq ? (
                  <tr class="detail">
                    <td colSpan={6}>
                      <div>
                        Subject <code>{l.subject}</code> · {l.bytes ?? new TextEncoder().encode(l.body).length} bytes{l.truncated ? " (only the first 64 KiB kept)" : ""}
                      </div>
                      <pre class="json">{prettyBody(l.body)}</pre>
                    </td>
                  </tr>
                ) : null}
              </>
            ))}
          </tbody>
        </table>
        {page && page.letters.length === 0 ? <p class="empty">No dead letters{q.get("reason") ? ` with reason ${q.get("reason")}` : ""}.</p> : null}
        <div class="pager">
          {cursors.length ? <a href={pageLink(cursors.slice(0, -1))}>← Newer</a> : <span />}
          {page?.cursor ? <a href={pageLink([...cursors, page.cursor])}>Older →</a> : <span />}
        </div>
      </div>
      {pending ? (
        <ConfirmDialog
          title={pending.action === "replay" ? `Replay dead letter ${pending.letter.seq}?` : `Discard dead letter ${pending.letter.seq}?`}
          confirmLabel={pending.action === "replay" ? "Replay" : "Discard"}
          danger={pending.action === "discard"}
          onClose={() => setPending(undefined)}
          onConfirm={async () => {
            const { letter, action } = pending;
            await post(`/api/dead-letters/${letter.seq}/${action}`, {});
            setNotice(action === "replay" ? `Dead letter ${letter.seq} published again to ${letter.subject}.` : `Dead letter ${letter.seq} discarded.`);
            setReload((n) => n + 1);
          }}
        >
          {pending.action === "replay" ? (
            <p>
              Its message is published again to <code>{pending.letter.subject}</code> and the dead letter is removed. Replay once the cause ({pending.letter.reason}) is fixed; a message that fails again comes
              back as a new dead letter.
            </p>
          ) : (
            <p>The message is removed for good.</p>
          )}
        </ConfirmDialog>
      ) : null}
    </div>
  );
}

function prettyBody(body: string): string {
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body;
  }
}

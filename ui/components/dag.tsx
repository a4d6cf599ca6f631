/**
 * A DAG workflow drawn as a graph: steps in layers by their longest path from a root (a step sits
 * one layer right of its deepest dependency), edges from each dependency, each node coloured by
 * the status of its step in this workflow (pending when it has not been scheduled).
 */
import type { DagDefinition, State } from "../types.js";
import { shownStatus } from "./timeline.js";

const NODE_W = 168;
const NODE_H = 46;
const GAP_X = 64;
const GAP_Y = 22;
const PAD = 12;

export function layout(dag: DagDefinition): { layer: Map<string, number>; rows: string[][] } {
  const deps = new Map(dag.activities.map((a) => [a.name, a.dependencies ?? []]));
  const layer = new Map<string, number>();
  const depth = (name: string, seen: Set<string>): number => {
    const known = layer.get(name);
    if (known !== undefined) return known;
    if (seen.has(name)) return 0; // a cycle (validation refuses them): draw, do not loop
    seen.add(name);
    const d = Math.max(-1, ...(deps.get(name) ?? []).filter((n) => deps.has(n)).map((n) => depth(n, seen))) + 1;
    layer.set(name, d);
    return d;
  };
  for (const a of dag.activities) depth(a.name, new Set());
  const rows: string[][] = [];
  for (const a of dag.activities) (rows[layer.get(a.name)!] ??= []).push(a.name);
  return { layer, rows };
}

export function DagGraph({ dag, state }: { dag: DagDefinition; state: State }) {
  const { rows } = layout(dag);
  const position = new Map<string, { x: number; y: number }>();
  const tallest = Math.max(...rows.map((r) => r.length));
  rows.forEach((names, col) => {
    const offset = ((tallest - names.length) * (NODE_H + GAP_Y)) / 2;
    names.forEach((name, row) => position.set(name, { x: PAD + col * (NODE_W + GAP_X), y: PAD + offset + row * (NODE_H + GAP_Y) }));
  });
  const width = PAD * 2 + rows.length * NODE_W + (rows.length - 1) * GAP_X;
  const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y;
  return (
    <svg class="dag" data-testid="dag" viewBox={`0 0 ${width} ${height}`} width={width} height={height} role="img" aria-label={`DAG of ${dag.name}`}>
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M 0 0 L 10 5 L 0 10 z" class="dag-arrow" />
        </marker>
      </defs>
      {dag.activities.flatMap((a) =>
        (a.dependencies ?? []).map((dep) => {
          const from = position.get(dep);
          const to = position.get(a.name);
          if (!from || !to) return null;
          const x1 = from.x + NODE_W;
          const y1 = from.y + NODE_H / 2;
          const x2 = to.x;
          const y2 = to.y + NODE_H / 2;
          const mid = (x1 + x2) / 2;
          return <path class="dag-edge" data-edge={`${dep}->${a.name}`} d={`M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2 - 2} ${y2}`} marker-end="url(#arrow)" />;
        }),
      )}
      {dag.activities.map((a) => {
        const p = position.get(a.name)!;
        const step = state.steps[a.name];
        const status = step ? shownStatus(step) : "pending";
        return (
          <g class={`dag-node status-${status}`} data-node={a.name} data-status={status} transform={`translate(${p.x} ${p.y})`}>
            <title>{`${a.name} (${a.type}): ${status}${step && step.attempt > 1 ? `, attempt ${step.attempt}` : ""}`}</title>
            <rect width={NODE_W} height={NODE_H} rx="8" />
            <text x="12" y="19" class="dag-name">
              {a.name.length > 20 ? `${a.name.slice(0, 19)}…` : a.name}
            </text>
            <text x="12" y="36" class="dag-sub">
              {status}
              {step && step.attempt > 1 ? ` · attempt ${step.attempt}` : ""}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

/**
 * Search attributes: typed values a workflow is found by (`wf list --where customerId=c-7`).
 * Set at start (`client.start(..., { searchAttributes })`) and from workflow code
 * (`ctx.upsertSearchAttributes`), kept in the state, and indexed (visibility/index-keys.ts).
 *
 * Four types, told apart by the JavaScript value: string, number (finite), boolean, and time (a
 * Date). A name has one type per workflow; a value of another type for it is refused, as is a
 * name that is not a plain identifier. Stored typed, so another language reads the same thing:
 * `{ "customerId": { "type": "string", "value": "c-7" }, "due": { "type": "time", "value": "2026-12-09T00:00:00.000Z" } }`.
 */
import { ValidationError } from "../errors.js";

export type SearchAttributeType = "string" | "number" | "boolean" | "time";
/** A value as code passes it: a Date is a time. */
export type SearchAttributeValue = string | number | boolean | Date;
export type SearchAttributes = Record<string, SearchAttributeValue>;
/** A value as the state and the index store it. */
export interface TypedAttribute {
  type: SearchAttributeType;
  /** A time as its ISO 8601 text (UTC). */
  value: string | number | boolean;
}
export type TypedAttributes = Record<string, TypedAttribute>;

const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
export const MAX_ATTRIBUTES = 32;
export const MAX_STRING_ATTRIBUTE_LENGTH = 256;

export function validateAttributeName(name: string, where: string): string {
  // "__proto__" fits the pattern, but as a key of a plain object it would set the prototype.
  if (!NAME_PATTERN.test(name) || name === "__proto__") {
    throw new ValidationError("WF_INVALID_SEARCH_ATTRIBUTE", `${where}: search attribute name ${JSON.stringify(name)} is not valid: use a letter or _ then up to 63 letters, digits or _`, {
      hint: "Name search attributes like identifiers: customerId, priority, region_code.",
    });
  }
  return name;
}

/** One value, typed; a ValidationError saying what is wrong otherwise. */
export function typedAttribute(name: string, value: unknown, where: string): TypedAttribute {
  validateAttributeName(name, where);
  const bad = (why: string) =>
    new ValidationError("WF_INVALID_SEARCH_ATTRIBUTE", `${where}: search attribute "${name}" ${why}`, {
      hint: "A search attribute is a string, a finite number, a boolean, or a Date (a time).",
    });
  if (typeof value === "string") {
    if (value.length > MAX_STRING_ATTRIBUTE_LENGTH) throw bad(`is ${value.length} characters long; at most ${MAX_STRING_ATTRIBUTE_LENGTH} are indexed`);
    return { type: "string", value };
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw bad(`is ${value}, not a finite number`);
    return { type: "number", value };
  }
  if (typeof value === "boolean") return { type: "boolean", value };
  if (isDate(value)) {
    const ms = Date.prototype.getTime.call(value);
    if (Number.isNaN(ms)) throw bad("is an invalid Date");
    return { type: "time", value: new Date(ms).toISOString() };
  }
  throw bad(`has a value of type ${value === null ? "null" : Array.isArray(value) ? "array" : typeof value}`);
}

/**
 * Validate and type `attributes`, checked against the types a workflow already has (`current`):
 * a name keeps its type. Returns the typed values to merge.
 */
export function typedAttributes(attributes: unknown, where: string, current: TypedAttributes = {}): TypedAttributes {
  if (typeof attributes !== "object" || attributes === null || Array.isArray(attributes) || isDate(attributes)) {
    throw new ValidationError("WF_INVALID_SEARCH_ATTRIBUTE", `${where}: search attributes must be an object of name → value`, { hint: 'Pass e.g. { customerId: "c-7", priority: 2 }.' });
  }
  const out: TypedAttributes = {};
  for (const [name, value] of Object.entries(attributes)) {
    const typed = typedAttribute(name, value, where);
    const known = Object.hasOwn(current, name) ? current[name] : undefined; // not "constructor" of Object.prototype
    if (known && known.type !== typed.type) {
      throw new ValidationError("WF_INVALID_SEARCH_ATTRIBUTE", `${where}: search attribute "${name}" is a ${known.type} in this workflow; ${JSON.stringify(typed.value)} is a ${typed.type}`, {
        hint: `Keep one type per name: pass a ${known.type}, or use another name.`,
      });
    }
    out[name] = typed;
  }
  if (Object.keys({ ...current, ...out }).length > MAX_ATTRIBUTES) {
    throw new ValidationError("WF_INVALID_SEARCH_ATTRIBUTE", `${where}: a workflow has at most ${MAX_ATTRIBUTES} search attributes`, { hint: "Index what you search by; keep the rest in the input." });
  }
  return out;
}

/**
 * A Date of any realm: workflow code in the sandbox (bundle/sandbox.ts) makes Dates of its own
 * realm, which `instanceof Date` in the host does not recognize. The internal slot does.
 */
function isDate(value: unknown): value is Date {
  return Object.prototype.toString.call(value) === "[object Date]";
}

/**
 * `current` with `typed` merged over it: a new object when a value changed, `current` itself
 * otherwise. The orchestrator re-indexes a workflow when its `searchAttributes` is another object
 * (orchestrator/loop.ts), so an upsert that changes nothing costs no index write.
 */
export function mergeAttributes(current: TypedAttributes | undefined, typed: TypedAttributes): TypedAttributes | undefined {
  const changed = Object.entries(typed).some(([name, value]) => !sameAttribute(current?.[name], value));
  return changed ? { ...current, ...typed } : current;
}

/** True when both hold the same names with the same typed values (in any order). */
export function sameAttributes(a: TypedAttributes, b: TypedAttributes): boolean {
  const names = Object.keys(a);
  return names.length === Object.keys(b).length && names.every((name) => sameAttribute(a[name], b[name]));
}

/** Plain values for summaries and `wf show`: times as Date. */
export function plainAttributes(typed: TypedAttributes | undefined): SearchAttributes | undefined {
  if (!typed) return undefined;
  const out: SearchAttributes = {};
  for (const [name, { type, value }] of Object.entries(typed)) out[name] = type === "time" ? new Date(value as string) : value;
  return out;
}

/**
 * A value as one NATS subject token: the type's letter, ':', the value's text, in base64url (so
 * any string is one token, and 2 ≠ "2"). Equal values give equal tokens.
 */
export function attributeToken(attribute: TypedAttribute): string {
  const text = attribute.type === "time" ? new Date(attribute.value as string).toISOString() : String(attribute.value);
  return Buffer.from(`${attribute.type[0]}:${text}`, "utf8").toString("base64url");
}

export const sameAttribute = (a: TypedAttribute | undefined, b: TypedAttribute | undefined): boolean => !!a && !!b && a.type === b.type && attributeToken(a) === attributeToken(b);

/**
 * A `--where name=value` (or `--attr`) from the command line: a JSON number, true/false, an ISO
 * 8601 date-time (a time), or else a string; quotes force a string (`code="42"`).
 */
export function parseAttributeArgument(text: string, flag: string): [string, SearchAttributeValue] {
  const at = text.indexOf("=");
  if (at <= 0) {
    throw new ValidationError("WF_INVALID_SEARCH_ATTRIBUTE", `${flag} ${JSON.stringify(text)} is not name=value`, { hint: `Write ${flag} customerId=c-7 (repeat the flag for more).` });
  }
  const name = validateAttributeName(text.slice(0, at), flag);
  const raw = text.slice(at + 1);
  if (raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"')) return [name, raw.slice(1, -1)];
  if (raw === "true" || raw === "false") return [name, raw === "true"];
  if (/^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(raw)) return [name, Number(raw)];
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(raw) && !Number.isNaN(Date.parse(raw))) return [name, new Date(raw)];
  return [name, raw];
}

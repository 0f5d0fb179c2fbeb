// Raw bytes as people read them: text with invalid UTF-8 and control bytes as escapes,
// hex with offsets, and where each JSON path of a reason sits in the text.

const hex2 = (b) => b.toString(16).padStart(2, "0");

export function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Length of the valid UTF-8 sequence at i, or 0. */
function sequence(bytes, i) {
  const b = bytes[i];
  if (b < 0x80) return 1;
  let n, min;
  if (b >= 0xc2 && b <= 0xdf) { n = 2; min = 0x80; }
  else if (b >= 0xe0 && b <= 0xef) { n = 3; min = 0x800; }
  else if (b >= 0xf0 && b <= 0xf4) { n = 4; min = 0x10000; }
  else return 0;
  if (i + n > bytes.length) return 0;
  let cp = b & (0xff >> (n + 1));
  for (let k = 1; k < n; k++) {
    if ((bytes[i + k] & 0xc0) !== 0x80) return 0;
    cp = (cp << 6) | (bytes[i + k] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

/** Pieces [{text, escape}] of the bytes: decoded text, or "\xNN" for a byte that is not. */
export function textPieces(bytes) {
  const pieces = [];
  const decoder = new TextDecoder("utf-8");
  let start = 0;
  const flush = (end) => { if (end > start) pieces.push({ text: decoder.decode(bytes.subarray(start, end)), escape: false }); };
  let i = 0;
  while (i < bytes.length) {
    const n = sequence(bytes, i);
    const b = bytes[i];
    const control = n === 1 && (b < 0x20 && b !== 0x0a && b !== 0x09 && b !== 0x0d || b === 0x7f);
    if (n === 0 || control) {
      flush(i);
      pieces.push({ text: `\\x${hex2(b)}`, escape: true });
      i += 1;
      start = i;
    } else {
      i += n;
    }
  }
  flush(bytes.length);
  return pieces;
}

/** Whether every byte decodes (so the text is exactly the body). */
export function isCleanText(bytes) {
  return textPieces(bytes).every((p) => !p.escape);
}

/** A hex dump: offset, 16 bytes, their printable ASCII. */
export function hexDump(bytes) {
  const lines = [];
  for (let off = 0; off < bytes.length; off += 16) {
    const row = bytes.subarray(off, off + 16);
    const hex = Array.from(row, hex2).join(" ").padEnd(47, " ");
    const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${off.toString(16).padStart(8, "0")}  ${hex}  ${ascii}`);
  }
  return lines.join("\n");
}

/** A reason's path ("$.data.units", "$[2].id", "$['x']") as keys and indexes. */
export function pathSegments(path) {
  if (typeof path !== "string" || !path.startsWith("$")) return null;
  const out = [];
  const pattern = /\.([^.[\]]+)|\[(\d+)\]|\['([^']*)'\]|\["([^"]*)"\]/gy;
  pattern.lastIndex = 1;
  while (pattern.lastIndex < path.length) {
    const m = pattern.exec(path);
    if (!m) return null;
    out.push(m[2] !== undefined ? Number(m[2]) : (m[1] ?? m[3] ?? m[4]));
  }
  return out;
}

/** [start, end) in `text` of the JSON value at `segments`, or null (not JSON, no such path). */
export function locate(text, segments) {
  let i = 0;
  const ws = () => { while (i < text.length && " \t\r\n".includes(text[i])) i++; };
  const string = () => {
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i));
  };
  // Skip one value, or descend into it when `depth` segments remain to match.
  const value = (depth) => {
    ws();
    const start = i;
    if (depth === segments.length) { skip(); return [start, i]; }
    const want = segments[depth];
    if (text[i] === "{") {
      i++;
      for (;;) {
        ws();
        if (text[i] === "}") { i++; return null; }
        const key = string();
        ws(); i++; // ':'
        if (key === want) return value(depth + 1);
        skip();
        ws();
        if (text[i] === ",") i++;
        else { i++; return null; }
      }
    }
    if (text[i] === "[") {
      i++;
      for (let index = 0; ; index++) {
        ws();
        if (text[i] === "]") { i++; return null; }
        if (index === want) return value(depth + 1);
        skip();
        ws();
        if (text[i] === ",") i++;
        else { i++; return null; }
      }
    }
    return null;
  };
  const skip = () => {
    ws();
    if (text[i] === '"') { string(); return; }
    if (text[i] === "{" || text[i] === "[") {
      const close = text[i] === "{" ? "}" : "]";
      i++;
      for (;;) {
        ws();
        if (text[i] === close) { i++; return; }
        if (close === "}") { string(); ws(); i++; }
        skip();
        ws();
        if (text[i] === ",") i++;
        else if (i >= text.length) throw new Error("truncated");
      }
    }
    while (i < text.length && !",]} \t\r\n".includes(text[i])) i++;
  };
  try {
    const found = value(0);
    return found && found[1] > found[0] ? found : null;
  } catch {
    return null;
  }
}

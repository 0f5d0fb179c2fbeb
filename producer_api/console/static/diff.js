// A line diff of two texts by longest common subsequence, for comparing schema versions.
// Lines both texts start or end with are matched first, so only the changed middle needs
// the quadratic table; past MAX_CELLS that middle is shown as removed, then added.

export const MAX_CELLS = 4_000_000;

/** The LCS table of `a` and `b` (arrays of lines), as lengths of the suffixes' LCS. */
function suffixTable(a, b) {
  const width = b.length + 1;
  const table = new Uint32Array((a.length + 1) * width);
  for (let i = a.length - 1; i >= 0; i -= 1) {
    for (let j = b.length - 1; j >= 0; j -= 1) {
      table[i * width + j] = a[i] === b[j]
        ? table[(i + 1) * width + j + 1] + 1
        : Math.max(table[(i + 1) * width + j], table[i * width + j + 1]);
    }
  }
  return table;
}

/** The edit script of `a` into `b` by their LCS: [op, line] with op " ", "-" or "+". */
function lcsScript(a, b) {
  if (a.length * b.length > MAX_CELLS) {
    return [...a.map((line) => ["-", line]), ...b.map((line) => ["+", line])];
  }
  const table = suffixTable(a, b);
  const width = b.length + 1;
  const out = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      out.push([" ", a[i]]);
      i += 1;
      j += 1;
    } else if (table[(i + 1) * width + j] >= table[i * width + j + 1]) {
      out.push(["-", a[i]]);
      i += 1;
    } else {
      out.push(["+", b[j]]);
      j += 1;
    }
  }
  for (; i < a.length; i += 1) out.push(["-", a[i]]);
  for (; j < b.length; j += 1) out.push(["+", b[j]]);
  return out;
}

/**
 * The line diff of `before` into `after`: one entry per line, `{op, text, old, new}` with op
 * " " (in both), "-" (only in `before`) or "+" (only in `after`), and each line's 1-based
 * number in the text(s) it belongs to (null in the other).
 */
export function lineDiff(before, after) {
  const a = before.split("\n");
  const b = after.split("\n");
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head += 1;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head &&
    a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail += 1;
  const script = [
    ...a.slice(0, head).map((line) => [" ", line]),
    ...lcsScript(a.slice(head, a.length - tail), b.slice(head, b.length - tail)),
    ...a.slice(a.length - tail).map((line) => [" ", line]),
  ];
  let old = 0;
  let now = 0;
  return script.map(([op, text]) => {
    if (op !== "+") old += 1;
    if (op !== "-") now += 1;
    return { op, text, old: op === "+" ? null : old, new: op === "-" ? null : now };
  });
}

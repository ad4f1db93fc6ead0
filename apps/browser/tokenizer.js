// The tokenizer of a compact export bundle, in JavaScript: text to the ids and mask the text graph takes.
//
// A port of the subset of the bundle's compact_tokenizer.py (itself a re-implementation of Hugging Face
// `tokenizers`) that compact's bundles use, giving the very same ids (tests/test_apps.py compares both on a few
// hundred strings in many scripts):
//   types           "bytes" (UTF-8 bytes + 3, BOS 1, EOS 2, PAD 0) and "hf" (a tokenizer.json)
//   normalizers     NFC NFD NFKC NFKD Lowercase Replace Strip Prepend Sequence
//   pre-tokenizers  Split (Oniguruma regex or string, every behavior, invert) ByteLevel Sequence
//   models          BPE (unk, fuse_unk, byte_fallback, continuing_subword_prefix, end_of_word_suffix,
//                   ignore_merges)
//   added tokens    with single_word/lstrip/rstrip/normalized; truncation and padding blocks
// Anything else (WordPiece/Unigram models, BertNormalizer, Metaspace, regexes using \w or \b, ...) throws an
// Error naming it. Runs in browsers and in Node 18+ (an ES module without dependencies).
//
//   const tok = BundleTokenizer.fromConfig(tokenizerConfigJson, tokenizerJson);   // tokenizerJson: hf only
//   const { ids, mask } = tok.call(["a red circle", "ein roter Kreis"], "longest");

const WHITE_SPACE = [[0x09, 0x0d], [0x20, 0x20], [0x85, 0x85], [0xa0, 0xa0], [0x1680, 0x1680], [0x2000, 0x200a],
  [0x2028, 0x2029], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000]];
const MAX_CP = 0x10ffff;
const WHITE_SPACE_SET = new Set(WHITE_SPACE.flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => a + i)));

function unsupported(what) {
  return new Error(`${what}, which tokenizer.js does not implement (compact_tokenizer.py may; ` +
    "tokenizer.js knows the bytes type and hf BPE tokenizers with NFC/NFD/NFKC/NFKD/Lowercase/Replace/Strip/" +
    "Prepend normalizers and Split/ByteLevel pre-tokenizers)");
}

// ---------------------------------------------------------------------------------------------------------------
// Oniguruma regex -> JavaScript regex (u flag)
// ---------------------------------------------------------------------------------------------------------------

const hex = (cp) => `\\u{${cp.toString(16)}}`;
const rangesBody = (ranges) => ranges.map(([a, b]) => (a === b ? hex(a) : `${hex(a)}-${hex(b)}`)).join("");

function complement(ranges) {
  const out = [];
  let next = 0;
  for (const [a, b] of ranges) {
    if (a > next) out.push([next, a - 1]);
    next = b + 1;
  }
  if (next <= MAX_CP) out.push([next, MAX_CP]);
  return out;
}

const CATEGORIES = ["L", "LC", "Lu", "Ll", "Lt", "Lm", "Lo", "M", "Mn", "Mc", "Me", "N", "Nd", "Nl", "No", "P", "Pc",
  "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "S", "Sm", "Sc", "Sk", "So", "Z", "Zs", "Zl", "Zp", "C", "Cc", "Cf", "Cs",
  "Co", "Cn"];
const LONG_NAMES = {
  letter: "L", casedletter: "LC", uppercaseletter: "Lu", lowercaseletter: "Ll", titlecaseletter: "Lt",
  modifierletter: "Lm", otherletter: "Lo", mark: "M", combiningmark: "M", nonspacingmark: "Mn", spacingmark: "Mc",
  enclosingmark: "Me", number: "N", decimalnumber: "Nd", letternumber: "Nl", othernumber: "No", punctuation: "P",
  connectorpunctuation: "Pc", dashpunctuation: "Pd", openpunctuation: "Ps", closepunctuation: "Pe",
  initialpunctuation: "Pi", finalpunctuation: "Pf", otherpunctuation: "Po", symbol: "S", mathsymbol: "Sm",
  currencysymbol: "Sc", modifiersymbol: "Sk", othersymbol: "So", separator: "Z", spaceseparator: "Zs",
  lineseparator: "Zl", paragraphseparator: "Zp", other: "C", control: "Cc", format: "Cf", surrogate: "Cs",
  privateuse: "Co", unassigned: "Cn", space: "space", whitespace: "space", digit: "digit",
};
const PROPERTY_NAMES = Object.fromEntries([...CATEGORIES.map((c) => [c.toLowerCase(), c]),
  ...Object.entries(LONG_NAMES)]);

// One set, as {cls: text usable inside [...], neg: text usable inside [...] for its complement}.
function namedSet(name, pattern) {
  if (name === "space") return { cls: rangesBody(WHITE_SPACE), neg: rangesBody(complement(WHITE_SPACE)) };
  if (name === "digit") return { cls: "\\p{Nd}", neg: "\\P{Nd}" };
  if (name === "hex") return { cls: "0-9A-Fa-f", neg: rangesBody(complement([[0x30, 0x39], [0x41, 0x46], [0x61, 0x66]])) };
  if (CATEGORIES.includes(name)) return { cls: `\\p{${name}}`, neg: `\\P{${name}}` };
  throw unsupported(`tokenizer.json has the regex ${JSON.stringify(pattern)}, which uses the class ${name}`);
}

function property(name, pattern) {
  const key = name.replace(/[ _-]/g, "").toLowerCase();
  const negate = key.startsWith("^");
  const canonical = PROPERTY_NAMES[negate ? key.slice(1) : key];
  if (canonical === undefined) {
    throw unsupported(`tokenizer.json has the regex ${JSON.stringify(pattern)}, which uses \\p{${name}}`);
  }
  const set = namedSet(canonical, pattern);
  return negate ? { cls: set.neg, neg: set.cls } : set;
}

const CHAR_ESCAPES = { n: 10, t: 9, r: 13, f: 12, v: 11, a: 7, e: 27 };

// The escape at p[i] (a backslash): {kind: "set", set} | {kind: "char", cp} | {kind: "raw", text}, and next index.
function readEscape(p, i, inClass) {
  if (i + 1 >= p.length) throw unsupported(`tokenizer.json has the regex ${JSON.stringify(p)} with a trailing backslash`);
  const c = p[i + 1];
  let j = i + 2;
  if (c === "p" || c === "P") {
    let name;
    if (p[j] === "{") {
      const end = p.indexOf("}", j);
      if (end < 0) throw unsupported(`tokenizer.json has the regex ${JSON.stringify(p)} with an unterminated \\p{`);
      name = p.slice(j + 1, end);
      j = end + 1;
    } else {
      name = p[j];
      j += 1;
    }
    const set = property(name, p);
    return [{ kind: "set", set: c === "P" ? { cls: set.neg, neg: set.cls } : set }, j];
  }
  const sets = { s: "space", d: "digit", h: "hex" };
  if (sets[c.toLowerCase()]) {
    const set = namedSet(sets[c.toLowerCase()], p);
    return [{ kind: "set", set: c === c.toLowerCase() ? set : { cls: set.neg, neg: set.cls } }, j];
  }
  if (CHAR_ESCAPES[c] !== undefined) return [{ kind: "char", cp: CHAR_ESCAPES[c] }, j];
  if (c === "x" || c === "u") {
    let digits;
    if (c === "x" && p[j] === "{") {
      const end = p.indexOf("}", j);
      digits = end > 0 ? p.slice(j + 1, end) : "";
      j = end + 1;
    } else {
      const m = (c === "x" ? /^[0-9a-fA-F]{1,2}/ : /^[0-9a-fA-F]{4}/).exec(p.slice(j));
      digits = m ? m[0] : "";
      j += digits.length;
    }
    if (!/^[0-9a-fA-F]{1,8}$/.test(digits)) {
      throw unsupported(`tokenizer.json has the regex ${JSON.stringify(p)} with a malformed \\${c} escape`);
    }
    return [{ kind: "char", cp: parseInt(digits, 16) }, j];
  }
  if (c === "0") {
    const m = /^[0-7]{0,2}/.exec(p.slice(j))[0];
    return [{ kind: "char", cp: parseInt("0" + m, 8) }, j + m.length];
  }
  if (!inClass) {
    if (c === "A") return [{ kind: "raw", text: "(?<![^])" }, j];
    if (c === "z") return [{ kind: "raw", text: "(?![^])" }, j];
    if (c === "Z") return [{ kind: "raw", text: "(?=\\n?(?![^]))" }, j];
  } else if (c === "b") {
    return [{ kind: "char", cp: 8 }, j];
  }
  if (/[0-9A-Za-z]/.test(c)) {
    throw unsupported(`tokenizer.json has the regex ${JSON.stringify(p)}, which uses the escape \\${c}`);
  }
  const cp = p.codePointAt(i + 1);
  return [{ kind: "char", cp }, j + (cp > 0xffff ? 1 : 0)];
}

function readClass(p, i) {
  let j = i + 1;
  const negate = p[j] === "^";
  if (negate) j += 1;
  const items = [];
  let first = true;
  for (;;) {
    if (j >= p.length) throw unsupported(`tokenizer.json has the regex ${JSON.stringify(p)} with an unterminated class`);
    const c = p[j];
    if (c === "]" && !first) {
      j += 1;
      break;
    }
    if (c === "[") throw unsupported(`tokenizer.json has the regex ${JSON.stringify(p)}, which nests character classes`);
    if (p.startsWith("&&", j)) throw unsupported(`tokenizer.json has the regex ${JSON.stringify(p)}, which intersects classes`);
    first = false;
    let item;
    if (c === "\\") {
      [item, j] = readEscape(p, j, true);
    } else {
      const cp = p.codePointAt(j);
      item = { kind: "char", cp };
      j += cp > 0xffff ? 2 : 1;
    }
    if (item.kind === "char" && p[j] === "-" && j + 1 < p.length && p[j + 1] !== "]") {
      let hi;
      let k;
      if (p[j + 1] === "\\") {
        [hi, k] = readEscape(p, j + 1, true);
      } else if (p[j + 1] === "[") {
        throw unsupported(`tokenizer.json has the regex ${JSON.stringify(p)}, which nests character classes`);
      } else {
        const cp = p.codePointAt(j + 1);
        hi = { kind: "char", cp };
        k = j + 1 + (cp > 0xffff ? 2 : 1);
      }
      if (hi.kind !== "char" || hi.cp < item.cp) {
        throw unsupported(`tokenizer.json has the regex ${JSON.stringify(p)} with a malformed range`);
      }
      items.push(`${hex(item.cp)}-${hex(hi.cp)}`);
      j = k;
    } else if (item.kind === "char") {
      items.push(hex(item.cp));
    } else {
      items.push(item.set.cls);
    }
  }
  const body = items.join("");
  if (!body) return [negate ? "[^]" : "[]", j];
  return [`[${negate ? "^" : ""}${body}]`, j];
}

function readGroup(p, i) {
  const rest = p.slice(i + 2);
  if (/^[:=!]/.test(rest)) return [`(?${rest[0]}`, i + 3];
  if (/^<[=!]/.test(rest)) return [`(?${rest.slice(0, 2)}`, i + 4];
  const named = /^(?:<([A-Za-z_]\w*)>|'([A-Za-z_]\w*)')/.exec(rest);
  if (named) return [`(?<${named[1] || named[2]}>`, i + 2 + named[0].length];
  if (rest.startsWith("#")) {
    const end = p.indexOf(")", i);
    if (end < 0) throw unsupported(`tokenizer.json has the regex ${JSON.stringify(p)} with an unterminated comment`);
    return ["", end + 1];
  }
  throw unsupported(`tokenizer.json has the regex ${JSON.stringify(p)}, which uses the group syntax (?${rest[0] || ""}`);
}

/** An Oniguruma regex (tokenizer.json's Split and Replace patterns) as a JavaScript regex source (flag u). */
export function translateRegex(pattern) {
  const out = [];
  let quantifiable = false; // may a '+' after this be a possessive quantifier?
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i];
    let afterQuantifier = false;
    if (c === "\\") {
      let item;
      [item, i] = readEscape(pattern, i, false);
      out.push(item.kind === "raw" ? item.text : item.kind === "set" ? `[${item.set.cls}]` : hex(item.cp));
    } else if (c === "[") {
      let text;
      [text, i] = readClass(pattern, i);
      out.push(text);
    } else if (pattern.startsWith("(?", i)) {
      let text;
      [text, i] = readGroup(pattern, i);
      out.push(text);
    } else if (c === "{") {
      const m = /^\{(\d*)(?:(,)(\d*))?\}/.exec(pattern.slice(i));
      if (m && (m[1] || m[3])) { // {n} {n,} {n,m} {,m}: a quantifier
        out.push(`{${m[1] || "0"}${m[2] || ""}${m[3] || ""}}`);
        i += m[0].length;
        afterQuantifier = true;
      } else {
        out.push("\\{");
        i += 1;
      }
    } else if (c === "}" || c === "]") {
      out.push(`\\${c}`);
      i += 1;
    } else if (c === ".") {
      out.push("[^\\n]"); // Ruby syntax: any character but a newline (JS's '.' also refuses \r, U+2028, U+2029)
      i += 1;
    } else if (c === "^") {
      out.push("(?<![^\\n])"); // Ruby syntax: at the start of a line (after \n only)
      i += 1;
    } else if (c === "$") {
      out.push("(?![^\\n])"); // ... and at its end (before \n only)
      i += 1;
    } else if (c === "*" || c === "+" || c === "?") {
      if (c === "+" && quantifiable) {
        throw unsupported(`tokenizer.json has the regex ${JSON.stringify(pattern)}, which uses a possessive quantifier`);
      }
      out.push(c);
      i += 1;
      afterQuantifier = c !== "?" || !quantifiable; // "x??" is lazy, "x?+" possessive
    } else {
      const cp = pattern.codePointAt(i);
      out.push(/[()|]/.test(c) ? c : hex(cp));
      i += cp > 0xffff ? 2 : 1;
    }
    quantifiable = afterQuantifier;
  }
  return out.join("");
}

const compiled = new Map();

function compile(pattern) {
  let rx = compiled.get(pattern);
  if (rx === undefined) {
    try {
      rx = new RegExp(translateRegex(pattern), "gu");
    } catch (e) {
      if (e instanceof SyntaxError) {
        throw unsupported(`tokenizer.json has the regex ${JSON.stringify(pattern)}, which JavaScript rejects (${e.message})`);
      }
      throw e;
    }
    compiled.set(pattern, rx);
  }
  return rx;
}

const escapeLiteral = (s) => Array.from(s, (ch) => hex(ch.codePointAt(0))).join("");

function patternOf(spec, where) {
  const keys = spec && typeof spec === "object" ? Object.keys(spec) : [];
  if (keys.length !== 1) throw new Error(`tokenizer.json: ${where} has a malformed pattern ${JSON.stringify(spec)}`);
  if (keys[0] === "String") return new RegExp(escapeLiteral(spec.String), "gu");
  if (keys[0] === "Regex") return compile(spec.Regex);
  throw unsupported(`tokenizer.json: ${where} has a pattern of kind ${keys[0]}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Splitting, as tokenizers' NormalizedString::split does it
// ---------------------------------------------------------------------------------------------------------------

const nextIndex = (s, i) => {
  const cp = s.codePointAt(i);
  return i + (cp !== undefined && cp > 0xffff ? 2 : 1);
};

// The cover of s by the matches of rx, iterated as the onig crate does: an empty match ending where the previous
// match ended is skipped by one character.
function regexMatches(rx, s) {
  if (!s) return [[0, 0, false]];
  const out = [];
  const n = s.length;
  let prev = 0;
  let pos = 0;
  let lastEnd = -1;
  while (pos <= n) {
    rx.lastIndex = pos;
    const m = rx.exec(s);
    if (m === null) break;
    const a = m.index;
    const b = a + m[0].length;
    if (a === b && b === lastEnd) {
      pos = nextIndex(s, pos);
      continue;
    }
    pos = lastEnd = b;
    if (prev !== a) out.push([prev, a, false]);
    out.push([a, b, true]);
    prev = b;
  }
  if (prev !== n) out.push([prev, n, false]);
  return out;
}

const BEHAVIORS = ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"];

function split(s, atStart, matches, behavior, invert = false) {
  if (invert) matches = matches.map(([a, b, m]) => [a, b, !m]);
  let spans = [];
  if (behavior === "Removed") {
    spans = matches.filter(([, , m]) => !m).map(([a, b]) => [a, b]);
  } else if (behavior === "Isolated") {
    spans = matches.map(([a, b]) => [a, b]);
  } else if (behavior === "Contiguous") {
    let prev = false;
    for (const [a, b, m] of matches) {
      if (m === prev && spans.length) spans[spans.length - 1][1] = b;
      else spans.push([a, b]);
      prev = m;
    }
  } else if (behavior === "MergedWithPrevious") {
    let prev = false;
    for (const [a, b, m] of matches) {
      if (m && !prev && spans.length) spans[spans.length - 1][1] = b;
      else spans.push([a, b]);
      prev = m;
    }
  } else if (behavior === "MergedWithNext") {
    let prev = false;
    for (const [a, b, m] of [...matches].reverse()) {
      if (m && !prev && spans.length) spans[spans.length - 1][0] = a;
      else spans.push([a, b]);
      prev = m;
    }
    spans.reverse();
  } else {
    throw unsupported(`tokenizer.json uses the split behavior ${JSON.stringify(behavior)} (known: ${BEHAVIORS.join(", ")})`);
  }
  return spans.filter(([a, b]) => b > a).map(([a, b]) => [s.slice(a, b), atStart && a === 0]);
}

// ---------------------------------------------------------------------------------------------------------------
// Normalizers: string -> string
// ---------------------------------------------------------------------------------------------------------------

// tokenizers lowercases char by char (Rust's char::to_lowercase): no final-sigma rule, unlike toLowerCase().
const lowercase = (s) => (s.includes("\u03a3") ? Array.from(s, (c) => c.toLowerCase()).join("") : s.toLowerCase());

const BYTE_TABLE = (() => {
  const keep = [];
  for (let b = 0x21; b <= 0x7e; b++) keep.push(b);
  for (let b = 0xa1; b <= 0xac; b++) keep.push(b);
  for (let b = 0xae; b <= 0xff; b++) keep.push(b);
  const table = new Array(256);
  for (const b of keep) table[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (table[b] === undefined) table[b] = String.fromCodePoint(256 + n++);
  return table;
})();
const encoder = new TextEncoder();
const byteLevelChars = (s) => Array.from(encoder.encode(s), (b) => BYTE_TABLE[b]).join("");

function stripWhite(s, left, right) {
  let a = 0;
  let b = s.length;
  if (left) while (a < b && WHITE_SPACE_SET.has(s.charCodeAt(a))) a++;
  if (right) while (b > a && WHITE_SPACE_SET.has(s.charCodeAt(b - 1))) b--;
  return s.slice(a, b);
}

function buildNormalizer(spec) {
  if (spec === null || spec === undefined) return null;
  const kind = spec.type;
  if (["NFC", "NFD", "NFKC", "NFKD"].includes(kind)) return (s) => s.normalize(kind);
  if (kind === "Lowercase") return lowercase;
  if (kind === "Replace") {
    const rx = patternOf(spec.pattern, "a Replace normalizer");
    const content = spec.content ?? "";
    return (s) => regexMatches(rx, s).map(([a, b, m]) => (m ? content : s.slice(a, b))).join("");
  }
  if (kind === "Strip") {
    const left = spec.strip_left ?? true;
    const right = spec.strip_right ?? true;
    return (s) => stripWhite(s, left, right);
  }
  if (kind === "Prepend") {
    const prefix = spec.prepend ?? "";
    return (s) => (s ? prefix + s : s);
  }
  if (kind === "Sequence") {
    const steps = (spec.normalizers || []).map(buildNormalizer).filter((x) => x !== null);
    return (s) => steps.reduce((acc, step) => step(acc), s);
  }
  throw unsupported(`tokenizer.json uses normalizer ${JSON.stringify(kind)}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Pre-tokenizers: one piece -> [[sub-piece, starts the text], ...]
// ---------------------------------------------------------------------------------------------------------------

// GPT-2's pattern, as tokenizers' ByteLevel pre-tokenizer has it.
export const BYTE_LEVEL_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

function buildPreTokenizer(spec) {
  if (spec === null || spec === undefined) return null;
  const kind = spec.type;
  if (kind === "Split") {
    const rx = patternOf(spec.pattern, "a Split pre-tokenizer");
    const behavior = spec.behavior ?? "Isolated";
    const invert = Boolean(spec.invert);
    split("", false, [], behavior); // an unknown behavior fails here, at load time
    return (s, atStart) => split(s, atStart, regexMatches(rx, s), behavior, invert);
  }
  if (kind === "ByteLevel") {
    const addPrefixSpace = spec.add_prefix_space ?? true;
    const rx = (spec.use_regex ?? true) ? compile(BYTE_LEVEL_PATTERN) : null;
    return (s, atStart) => {
      if (addPrefixSpace && !s.startsWith(" ")) s = " " + s;
      const pieces = rx !== null ? split(s, atStart, regexMatches(rx, s), "Isolated") : [[s, atStart]];
      return pieces.map(([p, st]) => [byteLevelChars(p), st]);
    };
  }
  if (kind === "Sequence") {
    const steps = (spec.pretokenizers || []).map(buildPreTokenizer).filter((x) => x !== null);
    return (s, atStart) => {
      let pieces = [[s, atStart]];
      for (const step of steps) pieces = pieces.flatMap(([p, st]) => step(p, st));
      return pieces;
    };
  }
  throw unsupported(`tokenizer.json uses pre_tokenizer ${JSON.stringify(kind)}`);
}

// ---------------------------------------------------------------------------------------------------------------
// BPE: one pre-tokenized word -> ids
// ---------------------------------------------------------------------------------------------------------------

const CACHE_LIMIT = 100000;
const PAIR = 4194304; // 2^22: pair key a * PAIR + b, exact in a double for any vocabulary under 4M entries

// A binary min-heap of [rank, pos, newId] arrays, ordered like Python's tuples.
class Heap {
  constructor() { this.items = []; }
  static less(x, y) { return x[0] !== y[0] ? x[0] < y[0] : x[1] !== y[1] ? x[1] < y[1] : x[2] < y[2]; }
  get size() { return this.items.length; }
  push(item) {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!Heap.less(a[i], a[parent])) break;
      [a[i], a[parent]] = [a[parent], a[i]];
      i = parent;
    }
  }
  pop() {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && Heap.less(a[l], a[m])) m = l;
        if (r < a.length && Heap.less(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

class BPE {
  constructor(spec) {
    if (![null, undefined, 0].includes(spec.dropout)) throw unsupported("tokenizer.json uses BPE dropout");
    this.vocab = new Map(Object.entries(spec.vocab || {}));
    this.unkToken = spec.unk_token ?? null;
    this.prefix = spec.continuing_subword_prefix || "";
    this.suffix = spec.end_of_word_suffix || "";
    this.fuseUnk = Boolean(spec.fuse_unk);
    this.byteFallback = Boolean(spec.byte_fallback);
    this.ignoreMerges = Boolean(spec.ignore_merges);
    if (this.vocab.size >= PAIR) throw unsupported(`tokenizer.json has a BPE vocabulary of ${this.vocab.size} entries`);
    this.merges = new Map();
    (spec.merges || []).forEach((merge, rank) => {
      const parts = typeof merge === "string" ? merge.split(" ") : merge;
      if (parts.length !== 2) throw new Error(`tokenizer.json: BPE merge #${rank} ${JSON.stringify(merge)} is not a pair`);
      const [a, b] = parts;
      const merged = a + b.slice(this.prefix.length);
      for (const t of [a, b, merged]) {
        if (!this.vocab.has(t)) throw new Error(`tokenizer.json: BPE merge ${JSON.stringify(merge)} uses ${JSON.stringify(t)}, which is not in the vocab`);
      }
      this.merges.set(this.vocab.get(a) * PAIR + this.vocab.get(b), [rank, this.vocab.get(merged)]);
    });
    this.cache = new Map();
  }

  unkId() {
    if (this.unkToken === null || !this.vocab.has(this.unkToken)) {
      throw new Error(`tokenizer.json: the BPE model met an unknown piece of text but its unk_token ` +
        `${JSON.stringify(this.unkToken)} is not in its vocabulary (tokenizers fails here too)`);
    }
    return this.vocab.get(this.unkToken);
  }

  symbols(word) {
    const chars = Array.from(word);
    const ids = [];
    let unk = null;
    const last = chars.length - 1;
    chars.forEach((ch, i) => {
      let s = ch;
      if (i > 0 && this.prefix) s = this.prefix + s;
      if (i === last && this.suffix) s += this.suffix;
      const tid = this.vocab.get(s);
      if (tid !== undefined) {
        if (unk !== null) {
          ids.push(unk);
          unk = null;
        }
        ids.push(tid);
        return;
      }
      if (this.byteFallback) {
        const byteIds = Array.from(encoder.encode(s),
          (b) => this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`));
        if (!byteIds.includes(undefined)) {
          ids.push(...byteIds); // as tokenizers: a pending unk is not flushed before these
          return;
        }
      }
      if (this.unkToken === null) return; // tokenizers drops the character
      if (unk !== null && !this.fuseUnk) ids.push(unk);
      unk = this.unkId();
    });
    if (unk !== null) ids.push(unk);
    return ids;
  }

  // tokenizers' Word::merge_all: a heap of (rank, position) over adjacent pairs, stale entries skipped.
  merge(sym) {
    const n = sym.length;
    if (n < 2) return sym;
    const merges = this.merges;
    const next = Array.from({ length: n }, (_, i) => (i + 1 < n ? i + 1 : -1));
    const prev = Array.from({ length: n }, (_, i) => i - 1);
    const alive = new Array(n).fill(true);
    const heap = new Heap();
    for (let i = 0; i < n - 1; i++) {
      const m = merges.get(sym[i] * PAIR + sym[i + 1]);
      if (m !== undefined) heap.push([m[0], i, m[1]]);
    }
    while (heap.size) {
      const [, pos, newId] = heap.pop();
      if (!alive[pos]) continue;
      const right = next[pos];
      if (right === -1) continue;
      let m = merges.get(sym[pos] * PAIR + sym[right]);
      if (m === undefined || m[1] !== newId) continue;
      sym[pos] = newId;
      alive[right] = false;
      const after = next[right];
      next[pos] = after;
      if (after !== -1) prev[after] = pos;
      const before = prev[pos];
      if (before !== -1) {
        m = merges.get(sym[before] * PAIR + newId);
        if (m !== undefined) heap.push([m[0], before, m[1]]);
      }
      if (after !== -1) {
        m = merges.get(newId * PAIR + sym[after]);
        if (m !== undefined) heap.push([m[0], pos, m[1]]);
      }
    }
    return sym.filter((_, i) => alive[i]);
  }

  tokenize(word) {
    if (!word) return [];
    let ids = this.cache.get(word);
    if (ids === undefined) {
      ids = this.ignoreMerges && this.vocab.has(word) ? [this.vocab.get(word)] : this.merge(this.symbols(word));
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(word, ids);
    }
    return ids;
  }
}

function buildModel(spec) {
  let kind = spec.type;
  if (kind === undefined) kind = Array.isArray(spec.vocab) ? "Unigram" : "merges" in spec ? "BPE" : "WordPiece";
  if (kind !== "BPE") throw unsupported(`tokenizer.json uses model ${JSON.stringify(kind)}`);
  return new BPE(spec);
}

// ---------------------------------------------------------------------------------------------------------------
// Added tokens: found in the text (leftmost-longest) before the model runs
// ---------------------------------------------------------------------------------------------------------------

const RUST_WORD = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;

class AddedTokens {
  constructor(tokens, normalizer) {
    this.info = { false: new Map(), true: new Map() };
    for (const t of tokens) {
      let content = t.content ?? "";
      const normalized = Boolean(t.normalized ?? !t.special);
      if (normalized && normalizer) content = normalizer(content);
      if (content && !this.info[normalized].has(content)) {
        this.info[normalized].set(content, [Number(t.id), Boolean(t.single_word), Boolean(t.lstrip), Boolean(t.rstrip)]);
      }
    }
    this.rx = {};
    for (const key of ["false", "true"]) {
      const contents = [...this.info[key].keys()];
      contents.sort((a, b) => Array.from(b).length - Array.from(a).length); // stable, as Python's sorted
      this.rx[key] = contents.length ? new RegExp(contents.map(escapeLiteral).join("|"), "gu") : null;
    }
    this.any = this.info.false.size > 0 || this.info.true.size > 0;
  }

  split(s, atStart, normalized) {
    const rx = this.rx[normalized];
    if (rx === null || !s) return [[s, null, atStart]];
    const info = this.info[normalized];
    const out = [];
    let offset = 0;
    for (const m of s.matchAll(rx)) {
      let start = m.index;
      let stop = start + m[0].length;
      const [tid, singleWord, lstrip, rstrip] = info.get(m[0]);
      if (singleWord) {
        const beforeOk = start === 0 || !RUST_WORD.test(Array.from(s.slice(Math.max(0, start - 2), start)).pop());
        const afterOk = stop === s.length || !RUST_WORD.test(String.fromCodePoint(s.codePointAt(stop)));
        if (!(beforeOk && afterOk)) continue;
      }
      if (lstrip) start = Math.max(stripWhite(s.slice(0, start), false, true).length, offset);
      if (rstrip) stop = s.length - stripWhite(s.slice(stop), true, false).length;
      if (offset < start) out.push([s.slice(offset, start), null, atStart && offset === 0]);
      out.push([s.slice(start, stop), tid, false]);
      offset = stop;
    }
    if (offset !== s.length) out.push([s.slice(offset), null, atStart && offset === 0]);
    return out;
  }

  extractAndNormalize(text, normalizer) {
    if (!this.any) return [[normalizer ? normalizer(text) : text, null, true]];
    const out = [];
    for (const [piece, tid, atStart] of this.split(text, true, false)) {
      if (tid !== null) out.push([piece, tid, atStart]);
      else if (piece) out.push(...this.split(normalizer ? normalizer(piece) : piece, atStart, true));
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// tokenizer.json, and the bundle's tokenizer
// ---------------------------------------------------------------------------------------------------------------

/** A tokenizer.json, encoding as tokenizers' `encode(text, add_special_tokens=False).ids` does. */
export class JsonTokenizer {
  constructor(spec) {
    if (!spec || !spec.model) throw new Error("tokenizer.json has no model");
    this.normalizer = buildNormalizer(spec.normalizer);
    this.preTokenizer = buildPreTokenizer(spec.pre_tokenizer);
    this.model = buildModel(spec.model);
    this.added = new AddedTokens(spec.added_tokens || [], this.normalizer);
    this.truncation = spec.truncation ?? null;
    this.padding = spec.padding ?? null;
    if (this.padding !== null) {
      const strategy = this.padding.strategy ?? "BatchLongest";
      if (strategy !== "BatchLongest" && !(typeof strategy === "object" && "Fixed" in strategy)) {
        throw unsupported(`tokenizer.json uses padding strategy ${JSON.stringify(strategy)}`);
      }
    }
  }

  encode(text) {
    let ids = [];
    for (const [piece, tid, atStart] of this.added.extractAndNormalize(text, this.normalizer)) {
      if (tid !== null) {
        ids.push(tid);
        continue;
      }
      if (!piece) continue;
      const words = this.preTokenizer ? this.preTokenizer(piece, atStart) : [[piece, atStart]];
      for (const [word] of words) ids.push(...this.model.tokenize(word));
    }
    const trunc = this.truncation;
    if (trunc !== null) {
      const max = Number(trunc.max_length ?? 512);
      if (ids.length > max) ids = trunc.direction === "Left" ? ids.slice(ids.length - max) : ids.slice(0, max);
    }
    const pad = this.padding;
    if (pad !== null) {
      const strategy = pad.strategy ?? "BatchLongest";
      let target = typeof strategy === "object" ? strategy.Fixed : ids.length;
      const multiple = pad.pad_to_multiple_of;
      if (multiple && target % multiple) target += multiple - (target % multiple);
      if (ids.length < target) {
        const fill = new Array(target - ids.length).fill(Number(pad.pad_id ?? 0));
        ids = pad.direction === "Left" ? fill.concat(ids) : ids.concat(fill);
      }
    }
    return ids;
  }
}

/** A bundle's tokenizer_config.json (+ tokenizer.json): ids and attention mask as compact makes them. A text
 * longer than context_length keeps its first context_length - 1 ids and ends with EOS. */
export class BundleTokenizer {
  constructor(encode, contextLength, bosId, eosId, padId) {
    if (!(contextLength >= 1)) throw new Error(`context_length must be at least 1, got ${contextLength}`);
    this.encodeText = encode;
    this.contextLength = contextLength;
    this.bosId = bosId;
    this.eosId = eosId;
    this.padId = padId;
  }

  /** config: the parsed tokenizer_config.json; tokenizerJson: the parsed tokenizer.json (type "hf" only). */
  static fromConfig(config, tokenizerJson = null) {
    const contextLength = Number(config.context_length);
    if (config.type === "bytes") {
      return new BundleTokenizer((text) => Array.from(encoder.encode(text), (b) => b + 3), contextLength, 1, 2, 0);
    }
    if (config.type === "hf") {
      if (!tokenizerJson) throw new Error(`the bundle's ${config.file || "tokenizer.json"} is missing`);
      const tok = new JsonTokenizer(tokenizerJson);
      const bos = config.bos_id ?? null;
      return new BundleTokenizer((text) => tok.encode(text), contextLength, bos === null ? null : Number(bos),
        Number(config.eos_id), Number(config.pad_id));
    }
    throw unsupported(`tokenizer_config.json has the tokenizer type ${JSON.stringify(config.type)} (known: bytes, hf)`);
  }

  /** The ids of one text with BOS (if any) and EOS, neither padded nor truncated. */
  encode(text) {
    const head = this.bosId === null ? [] : [this.bosId];
    return [...head, ...this.encodeText(text), this.eosId];
  }

  /** {ids, mask} as arrays of rows, truncated to contextLength and padded to the longest row ("longest") or to
   * contextLength ("max_length"). */
  call(texts, padTo = "longest") {
    if (padTo !== "longest" && padTo !== "max_length") throw new Error(`padTo must be 'longest' or 'max_length', not ${padTo}`);
    if (typeof texts === "string") texts = [texts];
    const rows = texts.map((text) => {
      const ids = this.encode(text);
      return ids.length > this.contextLength ? [...ids.slice(0, this.contextLength - 1), this.eosId] : ids;
    });
    const width = padTo === "max_length" ? this.contextLength : Math.max(0, ...rows.map((r) => r.length));
    return {
      ids: rows.map((r) => r.concat(new Array(width - r.length).fill(this.padId))),
      mask: rows.map((r) => new Array(r.length).fill(1).concat(new Array(width - r.length).fill(0))),
    };
  }
}

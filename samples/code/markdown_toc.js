/**
 * Builds a table of contents from the headings of a Markdown document.
 *
 * Headings inside fenced code blocks are ignored, and repeated titles get
 * numbered anchors (`intro`, `intro-1`, ...) the way most renderers do it.
 */

'use strict';

const HEADING = /^(#{1,6})\s+(.+?)\s*#*\s*$/;
const FENCE = /^(```|~~~)/;

/** Lower-case, strip punctuation, spaces to dashes: "Hello, World!" -> "hello-world". */
function slugify(title) {
  return title
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s-]/gu, '')
    .trim()
    .replace(/\s+/g, '-');
}

/** Returns [{level, title, anchor}] for every heading outside code fences. */
function headings(markdown) {
  const seen = new Map();
  const out = [];
  let inFence = false;
  for (const line of markdown.split(/\r?\n/)) {
    if (FENCE.test(line)) {
      inFence = !inFence;
      continue;
    }
    if (inFence) continue;
    const m = HEADING.exec(line);
    if (!m) continue;
    const title = m[2];
    const base = slugify(title);
    const count = seen.get(base) || 0;
    seen.set(base, count + 1);
    out.push({ level: m[1].length, title, anchor: count ? `${base}-${count}` : base });
  }
  return out;
}

/** A nested Markdown list of links, indented two spaces per level below `minLevel`. */
function toc(markdown, { minLevel = 2, maxLevel = 4 } = {}) {
  return headings(markdown)
    .filter((h) => h.level >= minLevel && h.level <= maxLevel)
    .map((h) => `${'  '.repeat(h.level - minLevel)}- [${h.title}](#${h.anchor})`)
    .join('\n');
}

module.exports = { slugify, headings, toc };

// The rule editor: CodeMirror 6 with the rule language's highlighting (keywords and units read
// from dsl/grammar.lark at build time), completion of metric names from the API's catalog,
// and the server's own checker (`checkRules`) as the linter, so the diagnostics underlined
// here are exactly those `tierwise rules check` prints.

import { autocompletion, closeBrackets, completionKeymap } from "@codemirror/autocomplete";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { HighlightStyle, StreamLanguage, bracketMatching, syntaxHighlighting } from "@codemirror/language";
import { linter, lintGutter } from "@codemirror/lint";
import { EditorState } from "@codemirror/state";
import { EditorView, highlightActiveLine, keymap, lineNumbers } from "@codemirror/view";
import { tags } from "@lezer/highlight";
import grammar from "tierwise:grammar";

const KEYWORDS = new Set(grammar.keywords);
const UNIT = new RegExp(`^(${grammar.units.join("|")})s?$`);
// A word as dsl/grammar.py reads one: letters, digits, `_`, combining marks and joiners.
const WORD = /^[\p{L}\p{N}_][\p{L}\p{N}\p{M}_\u200c\u200d]*/u;

/** The rule language for CodeMirror; `metricNames` (a Set) may grow after the catalog loads. */
export function ruleLanguage(metricNames) {
  return StreamLanguage.define({
    name: "tierwise-rules",
    token(stream) {
      if (stream.eatSpace()) return null;
      if (stream.match(/^#.*/)) return "comment";
      if (stream.match(/^"([^"\\\n]|\\.)*"?/)) return "string";
      if (stream.match(/^\d{4}-\d{2}-\d{2}(?![\p{L}\p{N}_])/u)) return "literal";
      if (stream.match(/^-?\d+(\.\d+)?/)) return "number";
      if (stream.match(/^attributes\.[\p{L}\p{N}_][\p{L}\p{N}\p{M}_\u200c\u200d]*/u)) return "propertyName";
      if (stream.match(/^(<=|>=|!=|=|<|>)/)) return "compareOperator";
      if (stream.match(/^[+\-*/]/)) return "arithmeticOperator";
      const word = stream.match(WORD);
      if (word) {
        if (KEYWORDS.has(word[0])) return "keyword";
        if (UNIT.test(word[0])) return "unit";
        if (metricNames.has(word[0])) return "variableName";
        return "typeName";
      }
      if (stream.match(/^[{}()[\],.]/)) return "punctuation";
      stream.next();
      return null;
    },
    languageData: { commentTokens: { line: "#" } },
  });
}

const highlighting = HighlightStyle.define([
  { tag: tags.keyword, color: "#7c3aed", fontWeight: "600" },
  { tag: tags.comment, color: "#6b7280", fontStyle: "italic" },
  { tag: tags.string, color: "#047857" },
  { tag: [tags.number, tags.literal], color: "#b45309" },
  { tag: tags.unit, color: "#b45309", fontStyle: "italic" },
  { tag: tags.variableName, color: "#1d4ed8" },
  { tag: tags.propertyName, color: "#0e7490" },
  { tag: tags.typeName, color: "#111827", fontWeight: "600" },
  { tag: [tags.compareOperator, tags.arithmeticOperator], color: "#be123c" },
]);

// The text before the cursor ends inside a quoted value compared with a field:
// `region = "ea`, `region != "`, `region in ("east", "we`.
const COMPARED = /([\p{L}_][\p{L}\p{N}\p{M}_]*)\s*(?:=|!=)\s*"([^"\\]*)$/u;
const LISTED = /([\p{L}_][\p{L}\p{N}\p{M}_]*)\s+(?:not\s+)?in\s*\((?:\s*"[^"\\]*"\s*,)*\s*"([^"\\]*)$/u;

/** Completion of a text field's value from the data: the values that exist, with counts. */
async function completeValue(context, metrics, valuesFor) {
  const line = context.state.doc.lineAt(context.pos);
  const before = line.text.slice(0, context.pos - line.from);
  const found = before.match(COMPARED) ?? before.match(LISTED);
  if (!found) return undefined;
  const [, name, typed] = found;
  if (!metrics().some((m) => m.name === name && m.type === "TEXT")) return null;
  const values = await valuesFor(name);
  return {
    from: context.pos - typed.length,
    // Most common first (the API's order), also once typing narrows them.
    options: values.map((v, i) => ({ label: v.value, type: "text", detail: `${v.customerCount.toLocaleString("en-US")} customers`, boost: Math.max(-99, 99 - i) })),
    validFor: /^[^"\\]*$/,
  };
}

/** Completion: the catalog's metrics (with type, unit and description) and the keywords;
 * inside a text field's quoted value, the values the data holds. */
function completeFrom(metrics, valuesFor) {
  return async (context) => {
    const value = valuesFor ? await completeValue(context, metrics, valuesFor) : undefined;
    if (value !== undefined) return value;
    const word = context.matchBefore(/[\p{L}\p{N}\p{M}_.]*/u);
    if (!word || (word.from === word.to && !context.explicit)) return null;
    const inString = /"[^"]*$/.test(context.state.doc.lineAt(context.pos).text.slice(0, context.pos - context.state.doc.lineAt(context.pos).from));
    if (inString) return null;
    const options = [
      ...metrics().map((metric) => ({
        label: metric.name,
        type: "variable",
        detail: [metric.type.toLowerCase(), metric.unit].filter(Boolean).join(", "),
        info: `${metric.description}${metric.parameters.length ? `\nParameters: ${metric.parameters.map((p) => p.toLowerCase()).join(", ")}` : ""}\nExample: ${metric.example}`,
        boost: 1,
      })),
      ...grammar.keywords.map((label) => ({ label, type: "keyword" })),
    ];
    return { from: word.from, options, validFor: /^[\p{L}\p{N}\p{M}_]*$/u };
  };
}

/** A document position from the checker's 1-based line and column, kept inside the text. */
function position(doc, line, column) {
  const at = doc.line(Math.min(Math.max(line, 1), doc.lines));
  return Math.min(at.from + Math.max(column - 1, 0), at.to);
}

export function toDiagnostic(doc, d) {
  let from = position(doc, d.line, d.column);
  let to = position(doc, d.endLine ?? d.line, d.endColumn ?? d.column);
  if (to <= from) {
    // A point: mark the character there (or the one before, at the end of a line).
    if (from < doc.line(Math.min(d.line, doc.lines)).to) to = from + 1;
    else if (from > 0) from -= 1, (to = from + 1);
  }
  return {
    from,
    to,
    severity: { WARNING: "warning", NOTE: "info" }[d.severity] ?? "error",
    message: d.hint ? `${d.message} (${d.hint})` : d.message,
    renderMessage: () => {
      const box = document.createElement("div");
      const message = document.createElement("div");
      message.className = "diagnostic-message";
      message.textContent = `${d.line}:${d.column}: ${d.message}`;
      if (d.code) {
        // The stable code (docs/rules.md lists them), as `tierwise rules check` prints it.
        const code = document.createElement("code");
        code.className = "diagnostic-code";
        code.textContent = ` [${d.code}]`;
        message.append(code);
      }
      box.append(message);
      if (d.hint) {
        const hint = document.createElement("div");
        hint.className = "diagnostic-hint";
        hint.textContent = d.hint;
        box.append(hint);
      }
      return box;
    },
  };
}

/**
 * A rule editor in `parent`, labelled "Rules". `check(source)` returns the checker's
 * diagnostics (or null when checking is not allowed: viewers get a read-only editor);
 * `valuesFor(field)` the values of a text field in the data, with their counts.
 */
export function ruleEditor(parent, { text, metrics, check, readOnly, onChange, valuesFor }) {
  const names = new Set(metrics().map((m) => m.name));
  const extensions = [
    lineNumbers(),
    history(),
    bracketMatching(),
    closeBrackets(),
    highlightActiveLine(),
    ruleLanguage(names),
    syntaxHighlighting(highlighting),
    EditorView.contentAttributes.of({ "aria-label": "Rules" }),
    EditorView.lineWrapping,
    EditorState.readOnly.of(readOnly),
    EditorView.editable.of(!readOnly),
    keymap.of([...defaultKeymap, ...historyKeymap, ...completionKeymap, indentWithTab]),
    EditorView.updateListener.of((update) => {
      if (update.docChanged && onChange) onChange(update.state.doc.toString());
    }),
  ];
  if (!readOnly) {
    extensions.push(
      autocompletion({ override: [completeFrom(metrics, valuesFor)] }),
      lintGutter(),
      linter(
        async (view) => {
          const source = view.state.doc.toString();
          const diagnostics = await check(source);
          // The text changed while the server checked: a newer check follows.
          if (diagnostics === null || view.state.doc.toString() !== source) return [];
          return diagnostics.map((d) => toDiagnostic(view.state.doc, d));
        },
        { delay: 400 },
      ),
    );
  }
  return new EditorView({ parent, state: EditorState.create({ doc: text, extensions }) });
}

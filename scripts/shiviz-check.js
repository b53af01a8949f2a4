// Reads a ShiViz log with ShiViz's own parser, as its "upload a file" button does
// (js/shiviz.js: line 1 the parser wrapped in ^...$, line 2 the delimiter, the log after them),
// then builds each execution's ModelGraph, which is where ShiViz refuses a bad clock.
//
//   node scripts/shiviz-check.js SHIVIZ_JS_DIR FILE [strict]
//
// SHIVIZ_JS_DIR is the js/ folder of a DistributedClocks/shiviz checkout (nothing of it is
// copied here). With "strict", ModelGraph also runs its stepThroughAndVerify, which ShiViz
// defines but does not call: every clock must then be the max-merge of what its host received.
// Prints OK and each execution's events, hosts and message edges, or REFUSED and ShiViz's
// message; exits 0 or 1.
"use strict";
const fs = require("fs");
const vm = require("vm");

const [dir, file, mode] = process.argv.slice(2);
if (!dir || !file) {
  console.error("usage: node scripts/shiviz-check.js SHIVIZ_JS_DIR FILE [strict]");
  process.exit(2);
}
const sources = [
  "util/exception.js", "util/util.js", "util/regexp.js", "model/logEvent.js",
  "model/vectorTimestamp.js", "model/parser.js", "graph/graphEvent.js", "graph/abstractNode.js",
  "graph/abstractGraph.js", "model/modelNode.js", "model/modelGraph.js",
];
let code = sources.map((f) => fs.readFileSync(`${dir}/${f}`, "utf8")).join("\n;\n");
if (mode === "strict") {
  const switched = code.replace("initParentChild();\n", "initParentChild();\n    stepThroughAndVerify();\n");
  if (switched === code) {
    console.error("this ShiViz has no initParentChild() call to follow with stepThroughAndVerify()");
    process.exit(2);
  }
  code = switched;
}
const ctx = vm.createContext({});
vm.runInContext(code, ctx);
ctx.text = fs.readFileSync(file, "utf8");
const out = vm.runInContext(`(function () {
  var lines = text.split("\\n", 2);
  if (lines.length < 2) return "REFUSED: the file has no second line";
  var parser = lines[0].trim() ? "^" + lines[0] + "$" : "(?<event>.*)\\\\n(?<host>\\\\S*) (?<clock>{.*})";
  var delim = lines[1].trim() ? "^" + lines[1].trim() + "$" : "";
  var log = text.substr(text.indexOf("\\n", text.indexOf("\\n") + 1) + 1);
  try {
    var delimiter = delim == "" ? null : new NamedRegExp(delim, "m");
    var p = new LogParser(log, delimiter, new NamedRegExp(parser.trim(), "m"));
    var res = [];
    p.getLabels().forEach(function (label) {
      var events = p.getLogEvents(label);
      var g = new ModelGraph(events);
      var edges = 0;
      g.getNodes().forEach(function (n) { edges += n.getChildren().length; });
      res.push(JSON.stringify(label) + ": " + events.length + " events, hosts " +
        g.getHosts().join(" ") + ", " + edges + " message edges");
    });
    return "OK\\n" + res.join("\\n");
  } catch (e) {
    return "REFUSED: " + (e && e.getMessage ? e.getMessage() : e);
  }
})()`, ctx);
console.log(out);
process.exit(out.startsWith("OK") ? 0 : 1);

// MathJax settings for pymdownx.arithmatex in "generic" mode: it wraps math in \( \) and \[ \].
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true
  },
  options: {
    ignoreHtmlClass: ".*|",
    // the sidebar repeats headings as plain text inside its links (class "reference"): typeset their math too
    processHtmlClass: "arithmatex|reference"
  }
};

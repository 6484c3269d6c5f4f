// Small static programs baked into the harness's local images (see
// e2e/harness/images): the sandbox pause, a web server standing in for nginx
// and httpd, and critest's no-new-privileges probe. No dependencies.
module github.com/nodesuite/nodesuite/tools/testimages

go 1.26.0

// Node-RED for the ingest benchmark's peer (bench/nodered.py): no editor, no credentials
// encryption, and the PostgreSQL client handed to the flow's function node.
const path = require("path");
module.exports = {
  uiHost: "127.0.0.1",
  uiPort: Number(process.env.NODERED_PORT),
  userDir: process.env.NODERED_USER_DIR,
  flowFile: path.join(process.env.NODERED_USER_DIR, "flows.json"),
  credentialSecret: false,
  disableEditor: true,
  httpAdminRoot: false,
  logging: { console: { level: "info" } },  // bench/nodered.py waits for "Connected to broker"
  functionGlobalContext: { pg: require(path.join(process.env.NODERED_MODULES, "pg")) },
};

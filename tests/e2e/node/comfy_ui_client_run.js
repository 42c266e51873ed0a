// Queues one prompt with comfy-ui-client 0.1.2, used as its README shows, and
// prints the images it returns as JSON on its last stdout line:
// {"<node id>": [{"image": {filename, subfolder, type}, "base64": "..."}]}.
//
// Environment: COMFY_SERVER_ADDRESS, the client's `serverAddress` with the
// credential in it as URL userinfo ("user:KEY@host:port"); COMFY_PROMPT, the
// API-format graph as JSON.
//
// The package is run as published. Its WebSocket (the `ws` package) sends URL
// userinfo as HTTP Basic by itself; its HTTP calls use Node's fetch, which
// refuses any URL with userinfo (WHATWG fetch), so this script lets fetch send
// that userinfo as the Basic header a URL's userinfo stands for (RFC 7617).
"use strict";

const { ComfyUIClient } = require("comfy-ui-client");

const plainFetch = globalThis.fetch;
globalThis.fetch = (input, init = {}) => {
  const url = new URL(input);
  if (!url.username && !url.password) {
    return plainFetch(input, init);
  }
  const pair = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
  const headers = new Headers(init.headers);
  headers.set("Authorization", `Basic ${Buffer.from(pair).toString("base64")}`);
  url.username = "";
  url.password = "";
  return plainFetch(url, { ...init, headers });
};

async function main() {
  const prompt = JSON.parse(process.env.COMFY_PROMPT);
  const serverAddress = process.env.COMFY_SERVER_ADDRESS;
  const clientId = "baadbabe-b00b-4206-9420-deadd00d1337";
  const client = new ComfyUIClient(serverAddress, clientId);

  await client.connect();
  const images = await client.getImages(prompt);
  await client.disconnect();

  const result = {};
  for (const nodeId of Object.keys(images)) {
    result[nodeId] = [];
    for (const { blob, image } of images[nodeId]) {
      const bytes = Buffer.from(await blob.arrayBuffer());
      result[nodeId].push({ image, base64: bytes.toString("base64") });
    }
  }
  process.stdout.write(`\n${JSON.stringify(result)}\n`);
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
    process.exit(1);
  },
);

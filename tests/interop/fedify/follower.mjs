// A Fedify-built follower for the fedistream interop tests (tests/interop/test_fedify.py).
//
// An independent ActivityPub implementation plays a remote account: it serves one Person on
// plain http://127.0.0.1:<port> (our server allows private networks in tests), looks up the
// fedistream owner by handle (WebFinger over https, trusted through NODE_EXTRA_CA_CERTS), sends
// a Follow and records, one JSON object a line in --out, what happens:
//
//   {"event":"listening", "actor": ..., "port": ...}
//   {"event":"looked-up", "id": ..., "inbox": ..., "type": ...}
//   {"event":"knock", "method", "url", "scheme": "rfc9421"|"draft-cavage-http-signatures-12"|"none", "status"}
//   {"event":"sent", "type": "Follow", "id": ...}           or {"event":"send-failed", ...}
//   {"event":"inbound", "method": "POST", "path", "scheme"}  how each delivery to us was signed
//   {"event":"received", "type": "Accept"|"Create"|"Update"|"Delete"|..., ...parsed fields}
//   {"event":"inbox-error"|"unverified"|"fatal", ...}
//
// Fedify verifies every inbound HTTP signature (either scheme) before it calls a listener, so a
// "received" line means the activity was signed by its actor and parsed by Fedify's vocabulary.
// Every outgoing request is observed by wrapping fetch, which is how the test learns which
// signature scheme our inbox accepted (Fedify knocks with one and retries with the other on 4xx).

import { AsyncLocalStorage } from "node:async_hooks";
import { appendFileSync } from "node:fs";
import { createServer } from "node:http";
import { parseArgs } from "node:util";

import { configure, getConsoleSink } from "@logtape/logtape";
import { createFederation, generateCryptoKeyPair, MemoryKvStore } from "@fedify/fedify";
import {
  Accept,
  Activity,
  Create,
  Delete,
  Endpoints,
  Follow,
  Person,
  Reject,
  Undo,
  Update,
} from "@fedify/vocab";

const USERNAME = "follower";

const { values: args } = parseArgs({
  options: {
    handle: { type: "string" },
    out: { type: "string" },
    "first-knock": { type: "string" },
    "log-level": { type: "string", default: "info" },
  },
});
if (!args.handle || !args.out) {
  console.error("usage: node follower.mjs --handle @user@host:port --out events.jsonl [--first-knock draft-cavage-http-signatures-12|rfc9421]");
  process.exit(2);
}

function record(event) {
  // One write per line, so the test (polling the file) never reads half an event.
  appendFileSync(args.out, JSON.stringify({ at: new Date().toISOString(), ...event }) + "\n");
}

// Fedify's own logs on stderr: the test attaches them to a failure report.
await configure({
  sinks: { console: getConsoleSink() },
  contextLocalStorage: new AsyncLocalStorage(),
  loggers: [
    { category: "fedify", lowestLevel: args["log-level"], sinks: ["console"] },
    { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["console"] },
  ],
});

// --- observe what goes out ------------------------------------------------------------------

function signatureScheme(headers) {
  if (headers.has("signature-input")) return "rfc9421";
  if (/keyId=/i.test(headers.get("signature") ?? "")) return "draft-cavage-http-signatures-12";
  return "none";
}

const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const request = input instanceof Request ? input : null;
  const headers = new Headers(init?.headers ?? request?.headers ?? {});
  const method = init?.method ?? request?.method ?? "GET";
  const url = String(request?.url ?? input);
  try {
    const response = await realFetch(input, init);
    record({ event: "knock", method, url, scheme: signatureScheme(headers), status: response.status });
    return response;
  } catch (error) {
    record({ event: "knock", method, url, scheme: signatureScheme(headers), error: String(error?.cause ?? error) });
    throw error;
  }
};

// --- the federation -------------------------------------------------------------------------

const keyPairs = [
  await generateCryptoKeyPair("RSASSA-PKCS1-v1_5"), // draft-cavage and RFC 9421 (rsa-v1_5-sha256)
  await generateCryptoKeyPair("Ed25519"), // Object Integrity Proofs, if Fedify wants them
];

const federationOptions = {
  kv: new MemoryKvStore(),
  allowPrivateAddress: true, // the peer is on loopback; never outside tests
};
if (args["first-knock"]) federationOptions.firstKnock = args["first-knock"];

let origin = null; // known once the server listens (port 0 → a free port)
let federation = null;

function buildFederation() {
  const fed = createFederation({ ...federationOptions, origin });

  fed
    .setActorDispatcher("/users/{identifier}", async (ctx, identifier) => {
      if (identifier !== USERNAME) return null;
      const keys = await ctx.getActorKeyPairs(identifier);
      return new Person({
        id: ctx.getActorUri(identifier),
        preferredUsername: identifier,
        name: "Fedify follower",
        summary: "An interop test account run by Fedify.",
        url: ctx.getActorUri(identifier),
        inbox: ctx.getInboxUri(identifier),
        endpoints: new Endpoints({ sharedInbox: ctx.getInboxUri() }),
        publicKey: keys[0].cryptographicKey,
        assertionMethods: keys.map((key) => key.multikey),
      });
    })
    .mapHandle((_ctx, username) => (username === USERNAME ? USERNAME : null))
    .setKeyPairsDispatcher(async (_ctx, identifier) => (identifier === USERNAME ? keyPairs : []));

  // What Fedify parsed, in plain JSON. Ids come from the activity itself; embedded objects are
  // read without refetching (an Accept embeds *our* Follow, which lives on another origin).
  const base = (activity) => ({
    type: activity.constructor.name,
    id: activity.id?.href ?? null,
    actor: activity.actorId?.href ?? null,
    objectId: activity.objectId?.href ?? null,
  });

  async function objectSummary(activity) {
    try {
      const object = await activity.getObject({ crossOrigin: "trust" });
      if (object == null) return null;
      const content = object.content;
      return {
        type: object.constructor.name,
        id: object.id?.href ?? null,
        content: content == null ? null : String(content),
        url: object.url?.href ?? (object.url ? String(object.url) : null),
        attributedTo: object.attributionId?.href ?? null,
        published: object.published ? String(object.published) : null,
        updated: object.updated ? String(object.updated) : null,
      };
    } catch (error) {
      return { error: String(error) };
    }
  }

  fed
    .setInboxListeners("/users/{identifier}/inbox", "/inbox")
    .on(Accept, async (ctx, accept) => {
      record({ event: "received", ...base(accept) });
    })
    .on(Reject, async (ctx, reject) => {
      record({ event: "received", ...base(reject) });
    })
    .on(Create, async (ctx, create) => {
      record({ event: "received", ...base(create), object: await objectSummary(create) });
    })
    .on(Update, async (ctx, update) => {
      record({ event: "received", ...base(update), object: await objectSummary(update) });
    })
    .on(Delete, async (ctx, del) => {
      // The object is a Tombstone or a bare id; either way the id is what a peer acts on.
      record({ event: "received", ...base(del) });
    })
    .on(Undo, async (ctx, undo) => {
      record({ event: "received", ...base(undo) });
    })
    .on(Activity, async (ctx, activity) => {
      record({ event: "received", ...base(activity) });
    })
    .onError(async (ctx, error) => {
      record({ event: "inbox-error", error: String(error?.stack ?? error) });
    })
    .onUnverifiedActivity(async (ctx, activity, reason) => {
      record({ event: "unverified", ...base(activity), reason: String(reason?.type ?? JSON.stringify(reason)) });
      return undefined; // keep Fedify's own answer (401)
    });

  return fed;
}

// --- plain Node HTTP in front of federation.fetch ---------------------------------------------

async function toWebRequest(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = chunks.length > 0 ? Buffer.concat(chunks) : null;
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (Array.isArray(value)) for (const item of value) headers.append(name, item);
    else if (value != null) headers.set(name, value);
  }
  const method = req.method ?? "GET";
  if (method === "POST") {
    // How the peer signed its delivery (Fedify accepts both schemes; this is for the report).
    record({ event: "inbound", method, path: req.url, scheme: signatureScheme(headers) });
  }
  return new Request(new URL(req.url ?? "/", origin), {
    method,
    headers,
    body: method === "GET" || method === "HEAD" ? null : body,
  });
}

const server = createServer(async (req, res) => {
  try {
    const response = await federation.fetch(await toWebRequest(req), { contextData: undefined });
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(Buffer.from(await response.arrayBuffer()));
  } catch (error) {
    record({ event: "fatal", where: "http", error: String(error?.stack ?? error) });
    res.writeHead(500, { "content-type": "text/plain" });
    res.end("internal error");
  }
});

await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const { port } = server.address();
origin = `http://127.0.0.1:${port}`;
federation = buildFederation();
const ctx = federation.createContext(new URL(origin), undefined);
const actorUri = ctx.getActorUri(USERNAME);
record({ event: "listening", actor: actorUri.href, port });

// --- follow the owner ---------------------------------------------------------------------

try {
  const owner = await ctx.lookupObject(args.handle);
  if (owner == null || owner.inboxId == null) {
    record({ event: "fatal", where: "lookup", error: `lookup of ${args.handle} gave ${owner?.constructor?.name ?? "nothing"}` });
  } else {
    record({
      event: "looked-up",
      type: owner.constructor.name,
      id: owner.id?.href ?? null,
      inbox: owner.inboxId.href,
      sharedInbox: owner.endpoints?.sharedInbox?.href ?? null,
      preferredUsername: owner.preferredUsername ?? null,
      followers: owner.followersId?.href ?? null,
    });
    const follow = new Follow({
      id: new URL(`${actorUri.href}#follows/${crypto.randomUUID()}`),
      actor: actorUri,
      object: owner.id,
    });
    try {
      await ctx.sendActivity({ identifier: USERNAME }, owner, follow);
      record({ event: "sent", type: "Follow", id: follow.id.href });
    } catch (error) {
      record({ event: "send-failed", type: "Follow", id: follow.id.href, error: String(error?.stack ?? error) });
    }
  }
} catch (error) {
  record({ event: "fatal", where: "follow", error: String(error?.stack ?? error) });
}

// Stay up to receive Accept, Create, Update, Delete until the test terminates us.
process.on("SIGTERM", () => process.exit(0));

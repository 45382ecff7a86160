// `http-check`: a planrt task type written in JavaScript (ComponentizeJS / jco).
//
// GETs a URL through wasi:http (the `fetch` global) and checks the status and, optionally,
// that the body contains a substring. A GET changes nothing, so a repeated attempt is
// harmless; a mismatch or a failed connection is `transient` (the endpoint may come up).

import { log } from 'planrt:task/host@0.1.0';

const TASK_TYPE = 'http-check';
// bodyContains needs the body in memory: refuse to buffer more than this.
const MAX_BUFFERED_BODY = 16 * 1024 * 1024;

const PARAMS_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'http-check params',
  type: 'object',
  properties: {
    url: {
      type: 'string',
      pattern: '^[Hh][Tt][Tt][Pp][Ss]?://',
      description: 'The http(s) URL to GET.',
    },
    expectStatus: {
      type: 'integer',
      minimum: 100,
      maximum: 599,
      default: 200,
      description: 'The HTTP status the response must have.',
    },
    bodyContains: {
      type: 'string',
      description: 'A substring the response body must contain.',
    },
  },
  required: ['url'],
  additionalProperties: false,
};

class Invalid extends Error {}

// Parse and check params. The host has checked them against PARAMS_SCHEMA already, but
// the plugin does not rely on that.
function parse(text) {
  let params;
  try {
    params = JSON.parse(text);
  } catch (e) {
    throw new Invalid(`params are not JSON: ${e.message}`);
  }
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    throw new Invalid('params must be an object');
  }
  const unknown = Object.keys(params).filter((k) => !(k in PARAMS_SCHEMA.properties));
  if (unknown.length > 0) throw new Invalid(`unknown params: ${unknown.join(', ')}`);
  const { url, expectStatus = 200, bodyContains } = params;
  if (typeof url !== 'string') throw new Invalid('url must be a string');
  let parsed;
  try {
    parsed = new URL(url);
  } catch (e) {
    throw new Invalid(`url ${JSON.stringify(url)} is not a valid URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new Invalid(`url ${JSON.stringify(url)} must be http or https`);
  }
  if (parsed.hostname === '') throw new Invalid(`url ${JSON.stringify(url)} has no host`);
  if (parsed.username !== '' || parsed.password !== '') {
    throw new Invalid('url must not contain credentials');
  }
  if (!Number.isInteger(expectStatus) || expectStatus < 100 || expectStatus > 599) {
    throw new Invalid('expectStatus must be an integer from 100 to 599');
  }
  if (bodyContains !== undefined && typeof bodyContains !== 'string') {
    throw new Invalid('bodyContains must be a string');
  }
  return { url: parsed.href, expectStatus, bodyContains };
}

// A `task-error` variant, thrown from `run` to make it return `err`.
const transient = (message) => ({ tag: 'transient', val: message });
const invalidParams = (message) => ({ tag: 'invalid-params', val: message });
const permanent = (message) => ({ tag: 'permanent', val: message });

export function describe() {
  return {
    taskType: TASK_TYPE,
    version: '0.1.0',
    description: 'GET a URL and check its status and body (JavaScript)',
    paramsSchema: JSON.stringify(PARAMS_SCHEMA),
    needs: { dirs: [], network: true },
    defaultTimeoutMs: 30000n,
    defaultMemoryLimit: undefined,
  };
}

export function validate(params) {
  try {
    parse(params);
  } catch (e) {
    throw e instanceof Invalid ? e.message : String(e);
  }
}

export async function run(context, params) {
  let p;
  try {
    p = parse(params);
  } catch (e) {
    throw invalidParams(e instanceof Invalid ? e.message : String(e));
  }

  let response;
  try {
    response = await fetch(p.url, { method: 'GET', redirect: 'manual' });
  } catch (e) {
    throw transient(`GET ${p.url} failed: ${e && e.message ? e.message : e}`);
  }

  // Read the body: count it, and keep it only when it is to be searched.
  let bytes = 0;
  const chunks = [];
  try {
    if (response.body) {
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        bytes += value.byteLength;
        if (p.bodyContains !== undefined) {
          if (bytes > MAX_BUFFERED_BODY) {
            throw permanent(`GET ${p.url}: body over ${MAX_BUFFERED_BODY} bytes, too large for bodyContains`);
          }
          chunks.push(value);
        }
      }
    }
  } catch (e) {
    if (e && e.tag) throw e;
    throw transient(`GET ${p.url}: reading the body failed after ${bytes} bytes: ${e && e.message ? e.message : e}`);
  }

  log('info', `GET ${p.url} -> ${response.status}, ${bytes} bytes (attempt ${context.attempt})`);

  if (response.status !== p.expectStatus) {
    throw transient(`GET ${p.url}: status ${response.status}, expected ${p.expectStatus}`);
  }
  if (p.bodyContains !== undefined) {
    const all = new Uint8Array(bytes);
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.byteLength;
    }
    const body = new TextDecoder('utf-8').decode(all);
    if (!body.includes(p.bodyContains)) {
      throw transient(`GET ${p.url}: body (${bytes} bytes) does not contain ${JSON.stringify(p.bodyContains)}`);
    }
  }
  return JSON.stringify({ status: response.status, bytes });
}

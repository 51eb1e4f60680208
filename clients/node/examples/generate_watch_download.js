#!/usr/bin/env node
'use strict';
// Generates a video, watches it until it ends and downloads it: one JSON object per line on stdout.
//
//   node examples/generate_watch_download.js --target 127.0.0.1:50051 --out boat.mp4 \
//       [--model gen4.5] [--prompt "a paper boat"] [--seconds 5] [--api-key KEY]
//   node examples/generate_watch_download.js --target 127.0.0.1:50051 --invalid
//   node examples/generate_watch_download.js --target 127.0.0.1:50051 --models
//   node examples/generate_watch_download.js --target 127.0.0.1:50051 --upload clip.mp4
//
// --invalid sends a request the server rejects, to show the decoded google.rpc details
// (BadRequest field violations, ErrorInfo reason). --models lists the models (ListModels): one
// {"event": "model", ...} line per model, with its modes, sizes, durations and options. --upload FILE
// uploads a local image or video (Upload) and prints {"event": "uploaded", "uri": "runway://...", ...}. Exit codes: 0 done, 1 the video did not complete,
// 2 usage, 3 the server answered with an error (printed as {"event": "error", ...}).

const { parseArgs } = require('node:util');
const { VideoClient, VideogenError } = require('../src/client');

const USAGE = 'usage: generate_watch_download.js --target HOST:PORT '
  + '(--out FILE | --invalid | --models | --upload FILE) '
  + '[--model M] [--prompt P] [--seconds N] [--api-key KEY]';

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function parse() {
  try {
    const { values } = parseArgs({
      options: {
        target: { type: 'string', default: process.env.VIDEOGEN_TARGET || '127.0.0.1:50051' },
        out: { type: 'string' },
        model: { type: 'string', default: 'gen4.5' },
        prompt: { type: 'string', default: 'a paper boat on a rainy street' },
        seconds: { type: 'string', default: '5' },
        'api-key': { type: 'string', default: process.env.VIDEOGEN_API_KEY || '' },
        invalid: { type: 'boolean', default: false },
        models: { type: 'boolean', default: false },
        upload: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    });
    if (values.help || (!values.invalid && !values.models && !values.out && !values.upload)) return null;
    return values;
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    return null;
  }
}

async function run(args, client) {
  if (args.models) {
    for (const model of await client.listModels()) emit({ event: 'model', ...model });
    return 0;
  }
  if (args.upload) {
    let reported = -1;
    const uploaded = await client.upload(args.upload, {
      onProgress: (sent, total) => {
        const percent = Math.floor((100 * sent) / total);
        if (percent >= reported + 25 || sent === total) {
          reported = percent;
          process.stderr.write(`uploaded ${sent} of ${total} bytes\n`);
        }
      },
    });
    emit({ event: 'uploaded', ...uploaded });
    return 0;
  }
  if (args.invalid) {
    // veo3.1 takes 4, 6 or 8 seconds: rejected locally with a BadRequest naming `seconds`.
    await client.generate({ model: 'veo3.1', prompt: 'x', seconds: 5 });
    emit({ event: 'unexpected-success' });
    return 1;
  }
  const started = await client.generate({
    model: args.model,
    prompt: args.prompt,
    seconds: Number(args.seconds),
  });
  emit({ event: 'generated', id: started.id, status: started.status });
  let last = started;
  for await (const video of client.watch(started.id)) {
    last = video;
    emit({ event: 'status', status: video.status, progress: video.progress });
  }
  if (last.status !== 'VIDEO_STATUS_COMPLETED') {
    emit({ event: 'ended', status: last.status, error: last.error });
    return 1;
  }
  let reported = -1;
  const bytes = await client.download(started.id, args.out, {
    onProgress: (done, total) => {
      const percent = total ? Math.floor((100 * done) / total) : 0;
      if (percent >= reported + 25 || done === total) {
        reported = percent;
        process.stderr.write(`downloaded ${done} of ${total ?? '?'} bytes\n`);
      }
    },
  });
  emit({
    event: 'saved',
    id: started.id,
    upstream_task_id: last.upstream_task_id,
    path: args.out,
    bytes,
  });
  return 0;
}

async function main() {
  const args = parse();
  if (args === null) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const client = new VideoClient(args.target, { apiKey: args['api-key'] });
  try {
    return await run(args, client);
  } catch (err) {
    if (!(err instanceof VideogenError)) throw err;
    emit({ event: 'error', ...err.toJSON() });
    return 3;
  } finally {
    client.close();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`${err.stack || err}\n`);
    process.exitCode = 4;
  },
);

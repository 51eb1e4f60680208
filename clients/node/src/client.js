'use strict';
// A small promise/async-iterator client for videogen.v1.VideoService on @grpc/grpc-js.
//
//   const { VideoClient } = require('videogen-client');
//   const client = new VideoClient('127.0.0.1:50051');
//   const video = await client.generate({ model: 'gen4.5', prompt: 'a paper boat', seconds: 5 });
//   for await (const v of client.watch(video.id)) console.log(v.status, v.progress);
//   await client.download(video.id, 'boat.mp4');
//   client.close();
//
// Messages are plain objects with the .proto's snake_case field names and enum names as strings
// (e.g. `video.status === 'VIDEO_STATUS_COMPLETED'`). Every failure is a VideogenError carrying the
// decoded google.rpc details (fieldViolations, retryAfterSeconds, reason).

const crypto = require('node:crypto');
const { once } = require('node:events');
const fsp = require('node:fs/promises');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const { videoServiceClient } = require('./protos');
const { VideogenError, codeName, decodeStatusDetails, fromServiceError } = require('./errors');

const TERMINAL = new Set(['VIDEO_STATUS_COMPLETED', 'VIDEO_STATUS_FAILED', 'VIDEO_STATUS_CANCELLED']);
// Stream failures worth resuming from where they stopped (the server's or the network's, not ours).
const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.ABORTED, grpc.status.INTERNAL]);
const PART_SUFFIX = '.part';
const MAX_RETRY_AFTER_SECONDS = 30;
const UPLOAD_CHUNK = 512 * 1024; // bytes per Upload message (the server takes up to 8 MiB per message)

function isTerminal(video) {
  return TERMINAL.has(video.status);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Milliseconds to wait before retry `attempt` (1-based), or null to give up. */
function retryDelayMs(error, attempt, maxAttempts) {
  if (!RETRYABLE.has(error.code) || attempt >= maxAttempts) return null;
  if (error.retryAfterSeconds !== null && error.retryAfterSeconds > 0) {
    return error.retryAfterSeconds <= MAX_RETRY_AFTER_SECONDS ? error.retryAfterSeconds * 1000 : null;
  }
  const base = Math.min(5000, 200 * 2 ** (attempt - 1));
  return base / 2 + Math.random() * (base / 2);
}

class VideoClient {
  /**
   * @param {string} target `host:port`
   * @param {object} [options]
   * @param {string} [options.apiKey] sent as `authorization: Bearer <key>`
   * @param {grpc.ChannelCredentials} [options.credentials] default: insecure (plaintext)
   * @param {number} [options.maxAttempts] consecutive failures a stream survives (default 5)
   */
  constructor(target, options = {}) {
    const Service = videoServiceClient();
    this._stub = new Service(target, options.credentials || grpc.credentials.createInsecure());
    this._apiKey = options.apiKey || '';
    this._maxAttempts = options.maxAttempts || 5;
  }

  close() {
    this._stub.close();
  }

  _metadata() {
    const md = new grpc.Metadata();
    if (this._apiKey) md.set('authorization', `Bearer ${this._apiKey}`);
    return md;
  }

  _callOptions(timeoutMs) {
    return timeoutMs ? { deadline: new Date(Date.now() + timeoutMs) } : {};
  }

  _unary(method, request, timeoutMs) {
    return new Promise((resolve, reject) => {
      this._stub[method](request, this._metadata(), this._callOptions(timeoutMs), (err, response) => {
        if (err) reject(fromServiceError(err));
        else resolve(response);
      });
    });
  }

  /**
   * Starts a generation and returns the new Video. `request` is a GenerateRequest object
   * ({model, prompt, seconds, size, input_reference, video_uri, ...}); a `request_id` is added when
   * missing so that a retry of this exact call can never start a second paid generation.
   */
  async generate(request, { timeoutMs } = {}) {
    const body = { ...request, request_id: request.request_id || crypto.randomUUID() };
    return (await this._unary('Generate', body, timeoutMs)).video;
  }

  /**
   * Every model the server's catalog knows (current ones first), each a Model object: `id`, `status`,
   * `modes` (with `sizes`, `default_size`, `prompt`), `durations`, `audio`, `seed`, `provider_options`...
   * A model it does not list may still be accepted: the server passes unknown ids to Runway.
   */
  async listModels({ timeoutMs } = {}) {
    return (await this._unary('ListModels', {}, timeoutMs)).models;
  }

  async get(id, { timeoutMs } = {}) {
    return (await this._unary('Get', { id }, timeoutMs)).video;
  }

  async cancel(id, { timeoutMs } = {}) {
    return (await this._unary('Cancel', { id }, timeoutMs)).video;
  }

  /**
   * One page of the caller's own videos, newest first, as the server recorded them (no call to Runway):
   * `{ videos, nextPageToken }`, where `nextPageToken` is '' on the last page. `filter`: `status = COMPLETED`,
   * `model = "gen4.5"`, or both joined by `AND`; `pageSize` 0 means the server's 50 (at most 1000);
   * `pageToken` is the previous page's `nextPageToken`, with the same filter. A page may hold fewer than
   * `pageSize` videos without being the last: only an empty token says that.
   */
  async listVideos({ filter = '', pageSize = 0, pageToken = '', timeoutMs } = {}) {
    const response = await this._unary(
      'List',
      { filter, page_size: pageSize, page_token: pageToken },
      timeoutMs,
    );
    return { videos: response.videos, nextPageToken: response.next_page_token };
  }

  /** Every one of the caller's videos matching `filter`, newest first, page after page. */
  async *iterVideos({ filter = '', pageSize = 0, timeoutMs } = {}) {
    let pageToken = '';
    do {
      const page = await this.listVideos({ filter, pageSize, pageToken, timeoutMs });
      yield* page.videos;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /**
   * Yields the video's state: the current one at once, then every change, ending after a terminal state.
   * A dropped stream is reopened (the server sends the current state first, so nothing is missed).
   */
  async *watch(id, { timeoutMs } = {}) {
    const options = this._callOptions(timeoutMs);
    let attempt = 0;
    for (;;) {
      const call = this._stub.WatchStatus({ id }, this._metadata(), options);
      let ended = false;
      let last = null;
      try {
        for await (const message of call) {
          attempt = 0;
          last = message.video;
          yield message.video;
        }
        ended = true;
        return;
      } catch (err) {
        ended = true;
        const error = fromServiceError(err);
        const delay = last !== null && isTerminal(last) ? null : retryDelayMs(error, ++attempt, this._maxAttempts);
        if (delay === null) throw error;
        await sleep(delay);
      } finally {
        if (!ended) call.cancel(); // the caller stopped iterating early
      }
    }
  }

  /**
   * Downloads output `index` of a COMPLETED video to `filePath`; returns the number of bytes.
   * Bytes go to `filePath + '.part'` first, which is renamed only once the size matches the server's
   * `total_size`. An existing `.part` is resumed with `offset` (pass `resume: false` to start over), and
   * a stream that breaks mid-way is resumed from the last byte written.
   * `onProgress(bytesDone, totalBytesOrNull)` is called after every chunk.
   */
  async download(id, filePath, { index = 0, resume = true, onProgress, timeoutMs } = {}) {
    const partPath = filePath + PART_SUFFIX;
    let offset = 0;
    if (resume) {
      try {
        offset = (await fsp.stat(partPath)).size;
      } catch (err) {
        if (err.code !== 'ENOENT') throw err;
      }
    }
    const file = await fsp.open(partPath, offset > 0 ? 'r+' : 'w');
    const options = this._callOptions(timeoutMs);
    let total = null;
    let attempt = 0;
    let restarted = false;
    try {
      for (;;) {
        const call = this._stub.StreamContent({ id, index, offset }, this._metadata(), options);
        try {
          for await (const message of call) {
            if (message.total_size > 0) total = message.total_size;
            if (message.offset !== offset) {
              call.cancel();
              throw new VideogenError(
                grpc.status.DATA_LOSS,
                `expected a chunk at offset ${offset}, got one at ${message.offset}`,
              );
            }
            await file.write(message.data, 0, message.data.length, offset);
            offset += message.data.length;
            attempt = 0;
            if (onProgress) onProgress(offset, total);
          }
          break;
        } catch (err) {
          const error = fromServiceError(err);
          if (error.code === grpc.status.OUT_OF_RANGE && offset > 0 && !restarted) {
            // The .part file is longer than this content: it is not a prefix of it. Start over.
            restarted = true;
            offset = 0;
            await file.truncate(0);
            continue;
          }
          const delay = retryDelayMs(error, ++attempt, this._maxAttempts);
          if (delay === null) throw error;
          await sleep(delay);
        }
      }
    } finally {
      await file.close();
    }
    if (total !== null && offset !== total) {
      throw new VideogenError(grpc.status.DATA_LOSS, `downloaded ${offset} bytes, the server announced ${total}`);
    }
    await fsp.rename(partPath, filePath);
    return offset;
  }

  /**
   * Uploads a local image or video (PNG, JPEG, WebP, MP4, MOV, WebM; 512 B to 200 MB) and returns the
   * UploadResponse: `uri` (a runway:// URI for input_reference, video_uri, references or
   * reference_images; valid until `expire_time`, 24 h), `size_bytes`, `sha256`, `content_type`.
   * The file is read and sent a chunk at a time (never whole in memory), waiting for the stream to
   * drain. The first message names the file and announces its size, so a size out of bounds is refused
   * at once; the server checks the type from the bytes. `onProgress(bytesSent, totalBytes)` after each
   * chunk.
   */
  async upload(filePath, options = {}) {
    const { filename, contentType = '', chunkSize = UPLOAD_CHUNK, onProgress, timeoutMs } = options;
    const file = await fsp.open(filePath, 'r');
    let call;
    try {
      const { size } = await file.stat();
      let settle;
      const done = new Promise((resolve, reject) => {
        settle = { resolve, reject };
      });
      call = this._stub.Upload(this._metadata(), this._callOptions(timeoutMs), (err, response) => {
        if (err) settle.reject(fromServiceError(err));
        else settle.resolve(response);
      });
      done.catch(() => {}); // awaited below; an early server error must not be an unhandled rejection
      let first = {
        filename: filename === undefined ? path.basename(filePath) : filename,
        content_type: contentType,
        size_bytes: size,
      };
      let sent = 0;
      const buffer = Buffer.alloc(chunkSize);
      for (;;) {
        const { bytesRead } = await file.read(buffer, 0, chunkSize, sent);
        if (bytesRead === 0 && first === null) break;
        const message = { ...(first || {}), data: Buffer.from(buffer.subarray(0, bytesRead)) };
        first = null;
        if (!call.write(message)) await Promise.race([once(call, 'drain'), done]);
        sent += bytesRead;
        if (onProgress && bytesRead > 0) onProgress(sent, size);
        if (bytesRead === 0) break;
      }
      call.end();
      return await done;
    } catch (err) {
      if (call) call.cancel();
      throw err;
    } finally {
      await file.close();
    }
  }
}

module.exports = {
  VideoClient,
  VideogenError,
  codeName,
  decodeStatusDetails,
  fromServiceError,
  isTerminal,
};

'use strict';
// Failed calls become VideogenError: the status code and message, plus the google.rpc details the server
// sends in the `grpc-status-details-bin` trailer (a serialized google.rpc.Status), decoded.

const grpc = require('@grpc/grpc-js');
const { statusRoot } = require('./protos');

const TYPE_URL_PREFIX = 'type.googleapis.com/';
const TO_OBJECT = { longs: Number, enums: String, defaults: true };

/** The status code's name, e.g. 3 -> "INVALID_ARGUMENT". */
function codeName(code) {
  return grpc.status[code] || `CODE_${code}`;
}

/**
 * Decodes a serialized google.rpc.Status into plain objects: each detail is `{'@type': name, ...fields}`
 * (as grpcurl prints it); a detail of an unknown type keeps its `value` as base64.
 */
function decodeStatusDetails(buffer) {
  const root = statusRoot();
  const status = root.lookupType('google.rpc.Status').decode(buffer);
  const details = status.details.map((any) => {
    const typeName = any.type_url.startsWith(TYPE_URL_PREFIX)
      ? any.type_url.slice(TYPE_URL_PREFIX.length)
      : any.type_url;
    let type = null;
    try {
      type = root.lookupType(typeName);
    } catch {
      type = null;
    }
    if (type === null) {
      return { '@type': typeName, value: Buffer.from(any.value).toString('base64') };
    }
    return { '@type': typeName, ...type.toObject(type.decode(any.value), TO_OBJECT) };
  });
  return { code: status.code, message: status.message, details };
}

class VideogenError extends Error {
  /**
   * @param {number} code gRPC status code
   * @param {string} message the server's message
   * @param {object[]} details decoded google.rpc details, each with '@type'
   */
  constructor(code, message, details = []) {
    super(`${codeName(code)}: ${message}`);
    this.name = 'VideogenError';
    this.code = code;
    this.codeName = codeName(code);
    this.serverMessage = message;
    this.details = details;
    this.reason = '';
    this.domain = '';
    this.errorMetadata = {};
    this.fieldViolations = [];
    this.retryAfterSeconds = null;
    this.resourceName = '';
    for (const detail of details) {
      switch (detail['@type']) {
        case 'google.rpc.ErrorInfo':
          this.reason = detail.reason;
          this.domain = detail.domain;
          this.errorMetadata = detail.metadata || {};
          break;
        case 'google.rpc.BadRequest':
          for (const v of detail.field_violations) {
            this.fieldViolations.push({ field: v.field, description: v.description });
          }
          break;
        case 'google.rpc.RetryInfo': {
          const delay = detail.retry_delay || { seconds: 0, nanos: 0 };
          this.retryAfterSeconds = Number(delay.seconds) + Number(delay.nanos) / 1e9;
          break;
        }
        case 'google.rpc.ResourceInfo':
          this.resourceName = detail.resource_name;
          break;
        default:
          break;
      }
    }
  }

  /** A JSON-friendly view, for scripts. */
  toJSON() {
    return {
      code: this.codeName,
      message: this.serverMessage,
      reason: this.reason,
      fieldViolations: this.fieldViolations,
      retryAfterSeconds: this.retryAfterSeconds,
      details: this.details,
    };
  }
}

/** Converts a grpc-js ServiceError (or anything thrown by a call) to a VideogenError. */
function fromServiceError(err) {
  if (err instanceof VideogenError) return err;
  if (err === null || typeof err !== 'object' || typeof err.code !== 'number') {
    return new VideogenError(grpc.status.UNKNOWN, String(err && err.message ? err.message : err));
  }
  let details = [];
  const raw = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (raw.length > 0) {
    try {
      details = decodeStatusDetails(raw[0]).details;
    } catch {
      details = []; // a malformed trailer must never hide the original error
    }
  }
  return new VideogenError(err.code, err.details || err.message || '', details);
}

module.exports = { VideogenError, codeName, decodeStatusDetails, fromServiceError };

'use strict';
// Loads the service definition from the repository's .proto files at run time (no generated code to
// keep in sync): protos/ for videogen.v1, third_party/ for google/api/field_behavior.proto, and this
// package's third_party/ for google/rpc (status + error details, to decode `grpc-status-details-bin`).
// The google/protobuf well-known types come with protobufjs.

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

const INCLUDE_DIRS = [
  path.join(REPO_ROOT, 'protos'),
  path.join(REPO_ROOT, 'third_party'),
  path.join(__dirname, '..', 'third_party'),
];

const SERVICE_PROTO = 'videogen/v1/video_service.proto';
const STATUS_PROTOS = ['google/rpc/status.proto', 'google/rpc/error_details.proto'];

// Field names as in the .proto (snake_case, like grpcurl's and the Python client's JSON), enums as
// their names, int64 as Number (offsets and sizes stay far below 2^53), unset scalars as their defaults.
const LOADER_OPTIONS = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: INCLUDE_DIRS,
};

let cachedService = null;

/** The generated client constructor for videogen.v1.VideoService. */
function videoServiceClient() {
  if (cachedService === null) {
    const definition = protoLoader.loadSync(SERVICE_PROTO, LOADER_OPTIONS);
    cachedService = grpc.loadPackageDefinition(definition).videogen.v1.VideoService;
  }
  return cachedService;
}

function resolveInclude(origin, target) {
  if (path.isAbsolute(target)) return target;
  for (const dir of INCLUDE_DIRS) {
    const candidate = path.join(dir, target);
    if (fs.existsSync(candidate)) return candidate;
  }
  return target; // protobufjs serves google/protobuf/* from its bundled copies
}

let cachedStatusRoot = null;

/** A protobufjs Root holding google.rpc.Status and the google.rpc error detail messages. */
function statusRoot() {
  if (cachedStatusRoot === null) {
    const root = new protobuf.Root();
    root.resolvePath = resolveInclude;
    root.loadSync(STATUS_PROTOS, { keepCase: true });
    cachedStatusRoot = root;
  }
  return cachedStatusRoot;
}

module.exports = { INCLUDE_DIRS, LOADER_OPTIONS, statusRoot, videoServiceClient };

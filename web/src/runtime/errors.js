// Typed errors with a message a person can act on: what went wrong, where, and how to fix it.
export class MlcbuildError extends Error {
  constructor(message, fix = "") {
    super(fix ? `${message} (${fix})` : message);
    this.name = this.constructor.name;
    this.fix = fix;
  }
}
export class WebGPUUnavailableError extends MlcbuildError {}
export class NoGPUAdapterError extends WebGPUUnavailableError {}
export class ShaderF16UnsupportedError extends MlcbuildError {}
export class DeviceLimitError extends MlcbuildError {}
export class ArtifactMissingError extends MlcbuildError {}
export class ChecksumMismatchError extends MlcbuildError {}
export class LinkMismatchError extends MlcbuildError {}
export class LinkFormatError extends MlcbuildError {}
export class PromptTemplateError extends MlcbuildError {} // a role's edited template: no {question}, a bad slot
export class HandoffFrameError extends MlcbuildError {} // a hand-off frame from another machine that must not run
export class PeerError extends MlcbuildError {} // the other machine of a split run left, stalled or was refused

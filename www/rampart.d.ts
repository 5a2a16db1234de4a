// Types of www/rampart.js: the API of pkg/rampart_web.js, run in a Web Worker, with progress
// and cancellation for the long calls.
import type {
  AttackOptions, AttackResult, BundleInfo, DiagnoseOptions, Diagnosis, ExplainOptions, InitOptions,
  InitResult, Prediction, ProbeOptions, ReportExplanation, ReportPrediction, ReportProbe,
  SuiteOptions, SuiteReport, TextModelInfo, TextModelSources,
} from "./pkg/rampart_web.js";
export type * from "./pkg/rampart_web.js";

/** Steps done so far (input gradients, or query batches of a gradient-free attack); `total`
 * is the planned count when it is known (attack), else undefined. */
export interface Progress { done: number; total?: number }
/** What every long call takes besides its own options. Aborting rejects the call at once with
 * `signal.reason` (an AbortError); the module is restarted and its bundles reloaded. */
export interface LongCall { onProgress?: (progress: Progress) => void; signal?: AbortSignal }

/** Starts the worker and instantiates the module (calls do it themselves when needed). */
export default function initRampart(): Promise<void>;
export function init(options?: InitOptions): Promise<InitResult>;
export function loadBundle(source: string | Uint8Array): Promise<BundleInfo>;
export function classify(pixels: Float32Array | number[]): Promise<Prediction>;
export function attack(options: AttackOptions & LongCall): Promise<AttackResult>;
export function diagnose(options: DiagnoseOptions & LongCall): Promise<Diagnosis>;
export function evaluateSuite(options: SuiteOptions & LongCall): Promise<SuiteReport>;
export function loadTextModel(sources: TextModelSources): Promise<TextModelInfo>;
export function classifyReport(text: string): Promise<ReportPrediction>;
export function explainReport(text: string, options?: ExplainOptions): Promise<ReportExplanation>;
export function probeReport(text: string, options?: ProbeOptions & LongCall): Promise<ReportProbe>;
export function embedReports(texts: string[]): Promise<number[][]>;
/** The backend of the last successful init(), or undefined before one. */
export function backend(): "webgpu" | "cpu" | undefined;
/** Panics inside the module on purpose (for tests of the recovery). */
export function __panicForTesting(): Promise<void>;

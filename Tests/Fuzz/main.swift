// libFuzzer harness for the segment log's parsers of on-disk data. Compiled by scripts/fuzz
// together with KappaCore's sources as one module (so it reaches the internal parse entry points
// in Sources/KappaCore/Log/LogFuzzTarget.swift); never part of the SwiftPM build.
// KAPPA_FUZZ_PARSER names the parser (one of LogFuzzTarget's cases); each input is its file bytes.
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

nonisolated(unsafe) private var target: LogFuzzTarget?
nonisolated(unsafe) private var scratch = ""

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    let name = getenv("KAPPA_FUZZ_PARSER").map { String(cString: $0) } ?? ""
    guard let chosen = LogFuzzTarget(rawValue: name) else {
        let names = LogFuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
        fputs("set KAPPA_FUZZ_PARSER to one of: \(names)\n", stderr)
        exit(2)
    }
    target = chosen
    // On tmpfs when there is one: the log fsyncs its files, which on a disk costs milliseconds.
    let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    var template = Array("\(base)/kappa-fuzz-XXXXXX".utf8CString)
    guard let dir = mkdtemp(&template) else { fputs("mkdtemp failed\n", stderr); exit(2) }
    scratch = String(cString: dir)
    atexit { try? FileSystem.removeTree(scratch) }  // libFuzzer ends with exit(), also after a crash it reports
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let target else { return 0 }
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    // The parsers' entry points are async (the log's reads are); libFuzzer's thread waits.
    nonisolated(unsafe) var problems: [String] = []
    let done = DispatchSemaphore(value: 0)
    let dir = scratch
    Task {
        problems = await target.run(bytes, scratch: dir)
        done.signal()
    }
    done.wait()
    if !problems.isEmpty { fatalError("\(target.rawValue): \(problems.joined(separator: "; "))") }
    return 0
}

#if canImport(Glibc)
import Glibc
#endif

/// Writes all of `bytes` to a descriptor, retrying EINTR and short writes; false if the reader is gone.
/// The zygote, its children and the engine all talk over pipes and sockets with it.
public func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    bytes.withUnsafeBytes { buf in
        var off = 0
        while off < buf.count {
            let n = write(fd, buf.baseAddress! + off, buf.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            off += n
        }
        return true
    }
}

/// Seconds on the monotonic clock (deadlines, stage timings).
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

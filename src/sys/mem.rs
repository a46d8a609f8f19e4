//! Keeping a long-lived process small: the shim of an idle container should cost next to no
//! memory. After start-up its resident set is mostly pages of berth's own binary that start-up
//! touched once (argument parsing, libcontainer, the OCI spec) and will not touch again.
use std::io::BufRead;

/// Gives back what start-up left behind: free heap memory (`malloc_trim`), and this process's
/// mappings of read-only file pages that hold no private copy (code and read-only data of the
/// binary and its libraries). Those pages stay in the page cache, shared with every other
/// process using them; a page needed again is mapped again on its next use. Writable mappings
/// and read-only ones with private pages (relocated data, `Anonymous` > 0 in smaps) are never
/// touched, since dropping those would lose their contents. Returns the bytes unmapped.
pub fn drop_startup_pages() -> usize {
    // SAFETY: malloc_trim only returns free memory of the allocator to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    let Ok(f) = std::fs::File::open("/proc/self/smaps") else {
        return 0;
    };
    // The ranges first, then one madvise each: parsing after a drop would map its own code
    // again, and whatever runs after the drop is what stays mapped.
    let mut ranges = Vec::new();
    let mut current: Option<(usize, usize, bool)> = None;
    let mut take = |m: Option<(usize, usize, bool)>| {
        if let Some((start, end, true)) = m {
            ranges.push((start, end));
        }
    };
    for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
        if let Some((range, rest)) = mapping_header(&line) {
            take(current.take());
            current = Some((range.0, range.1, rest));
        } else if let Some(kb) = line
            .strip_prefix("Anonymous:")
            .or_else(|| line.strip_prefix("Swap:"))
        {
            // Private pages (in memory or swapped out): this mapping is not a pure view of
            // the file.
            if kb.trim().trim_end_matches("kB").trim() != "0"
                && let Some(c) = current.as_mut()
            {
                c.2 = false;
            }
        }
    }
    take(current.take());
    let mut dropped = 0;
    for (start, end) in ranges {
        // SAFETY: [start, end) is a whole mapping of ours, read from smaps just now; it is
        // read-only and file-backed with no anonymous (private) pages, so MADV_DONTNEED only
        // unmaps page-cache pages, which the next access maps again with the same contents.
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if rc == 0 {
            dropped += end - start;
        }
    }
    dropped
}

/// Parses an smaps mapping header (`start-end perms offset dev inode path`): the range, and
/// whether it is a candidate (a read-only file mapping, not a special one like `[vdso]`).
fn mapping_header(line: &str) -> Option<((usize, usize), bool)> {
    let mut parts = line.split_whitespace();
    let range = parts.next()?;
    let (a, b) = range.split_once('-')?;
    let start = usize::from_str_radix(a, 16).ok()?;
    let end = usize::from_str_radix(b, 16).ok()?;
    let perms = parts.next()?;
    if perms.len() != 4 {
        return None;
    }
    let _offset = parts.next()?;
    let _dev = parts.next()?;
    let inode = parts.next()?;
    let path: Vec<&str> = parts.collect();
    let candidate = !perms.contains('w')
        && perms.ends_with('p')
        && inode != "0"
        && path.first().is_some_and(|p| p.starts_with('/'));
    Some(((start, end), candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        let h = "55d0c0a00000-55d0c0b00000 r-xp 00001000 08:01 1234 /usr/bin/berth";
        assert_eq!(
            mapping_header(h),
            Some(((0x55d0c0a00000, 0x55d0c0b00000), true))
        );
        let w = "55d0c0a00000-55d0c0b00000 rw-p 00001000 08:01 1234 /usr/bin/berth";
        assert_eq!(mapping_header(w).map(|m| m.1), Some(false));
        let v = "7ffd1000-7ffd3000 r-xp 00000000 00:00 0 [vdso]";
        assert_eq!(mapping_header(v).map(|m| m.1), Some(false));
        assert_eq!(mapping_header("Rss:  4 kB"), None);
        assert_eq!(mapping_header("VmFlags: rd ex mr mw me dw"), None);
    }

    #[test]
    fn dropping_pages_keeps_the_process_working() {
        let data: Vec<u64> = (0..1000).collect();
        drop_startup_pages();
        // Code and data are still there.
        assert_eq!(data.iter().sum::<u64>(), 499_500);
        assert_eq!(format!("{}", 42), "42");
    }
}

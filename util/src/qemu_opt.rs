//! Values pasted into QEMU's `key=value,key=value` option strings (`-drive file=…`, `-chardev path=…`,
//! `-qmp unix:…`, qemu-storage-daemon `--blockdev filename=…`, `--export mountpoint=…`): QEMU splits on
//! `,` and reads `,,` as a literal comma, so a path with a comma must have it doubled or it would end
//! the value and start a new (attacker-chosen) option.

use std::path::Path;

/// `path` as one QEMU option value.
pub fn path_value(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_are_doubled() {
        assert_eq!(path_value(Path::new("/s,x/disk.qcow2")), "/s,,x/disk.qcow2");
        assert_eq!(path_value(Path::new("/a,file=/etc/shadow")), "/a,,file=/etc/shadow");
        assert_eq!(path_value(Path::new("/plain")), "/plain");
    }
}

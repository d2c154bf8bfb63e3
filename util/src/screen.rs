//! A VM's screenshot read back in tests: QEMU's `screendump` PNG of the serial console's terminal.

use anyhow::{Context, Result};
use std::path::Path;

/// Text rows are 16 pixels high in QEMU's text console font.
const ROW_PX: usize = 16;

pub struct Screen {
    pub width: u32,
    pub height: u32,
    /// Per 16-pixel text row: whether any pixel in it is lit (brighter than the black background).
    lit_rows: Vec<bool>,
}

impl Screen {
    pub fn read(path: &Path) -> Result<Self> {
        let ctx = || format!("reading screenshot {}", path.display());
        let mut decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).with_context(ctx)?));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().with_context(ctx)?;
        let mut buf = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut buf).with_context(ctx)?;
        let channels = frame.color_type.samples();
        let mut lit_rows = vec![false; (frame.height as usize).div_ceil(ROW_PX)];
        for (y, line) in buf[..frame.buffer_size()].chunks(frame.line_size).enumerate() {
            let lit = line
                .chunks(channels)
                .any(|px| px.iter().take(3.min(channels)).any(|&c| c > 0x40));
            lit_rows[y / ROW_PX] |= lit;
        }
        Ok(Screen {
            width: frame.width,
            height: frame.height,
            lit_rows,
        })
    }

    /// Text rows with something drawn, below QEMU's label on the first row ("serial0 console").
    pub fn lit_text_rows(&self) -> usize {
        self.lit_rows.iter().skip(1).filter(|l| **l).count()
    }
}

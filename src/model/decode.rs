//! Encoded images (JPEG, PNG) to RGB frames: for Kafka frames, uploads and files.

use super::RgbImage;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot decode image: {0} (JPEG and PNG are supported)")]
    Decode(String),
    #[error("image is {width}x{height}; the limit is {max} pixels on a side")]
    TooLarge { width: u32, height: u32, max: u32 },
    #[error("image is {width}x{height} = {} pixels; the limit is {max_pixels} (limits.max_frame_pixels)", *.width as u64 * *.height as u64)]
    TooManyPixels { width: u32, height: u32, max_pixels: u64 },
}

/// Largest side accepted, to bound memory for a single request.
pub const MAX_SIDE: u32 = 8192;

/// What an encoded image may declare before a pixel of it is decoded: a few hundred
/// bytes of PNG can declare 8192x8192 (200 MB of RGB), so the header is checked first
/// and the decoder's own allocations are capped too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    pub max_side: u32,
    pub max_pixels: u64,
}

impl ImageLimits {
    /// The default of `limits.max_frame_pixels`: 4096 x 4096 (48 MiB of RGB).
    pub const DEFAULT_MAX_PIXELS: u64 = 4096 * 4096;

    pub fn pixels(max_pixels: u64) -> Self {
        Self { max_side: MAX_SIDE, max_pixels }
    }

    /// Refuses a frame of `width` x `height` that breaks the limits.
    pub fn check(&self, width: u32, height: u32) -> Result<(), DecodeError> {
        let max_side = self.max_side.min(MAX_SIDE);
        if width > max_side || height > max_side {
            return Err(DecodeError::TooLarge { width, height, max: max_side });
        }
        if width as u64 * height as u64 > self.max_pixels {
            return Err(DecodeError::TooManyPixels { width, height, max_pixels: self.max_pixels });
        }
        Ok(())
    }
}

/// Decodes JPEG/PNG bytes to RGB (local files: the widest limits).
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    decode_image_limited(bytes, ImageLimits::pixels(MAX_SIDE as u64 * MAX_SIDE as u64))
}

/// Decodes JPEG/PNG bytes to RGB, refusing images with a side over `max_side` from their
/// header, before any pixel is decoded.
pub fn decode_image_within(bytes: &[u8], max_side: u32) -> Result<RgbImage, DecodeError> {
    decode_image_limited(bytes, ImageLimits { max_side, max_pixels: MAX_SIDE as u64 * MAX_SIDE as u64 })
}

/// Decodes JPEG/PNG bytes to RGB within `limits`, checked on the header before any
/// pixel is decoded; the decoder's allocations are capped to what such an image needs.
pub fn decode_image_limited(bytes: &[u8], limits: ImageLimits) -> Result<RgbImage, DecodeError> {
    let guess = || image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| DecodeError::Decode(e.to_string()));
    let (w, h) = guess()?.into_dimensions().map_err(|e| DecodeError::Decode(e.to_string()))?;
    limits.check(w, h)?;
    let mut caps = image::Limits::default();
    caps.max_image_width = Some(w);
    caps.max_image_height = Some(h);
    // RGBA at 16 bits per channel plus the decoder's working rows.
    caps.max_alloc = Some(w as u64 * h as u64 * 8 + (4 << 20));
    let mut reader = guess()?;
    reader.limits(caps);
    let img = reader.decode().map_err(|e| DecodeError::Decode(e.to_string()))?.to_rgb8();
    let (w, h) = img.dimensions();
    RgbImage::new(w, h, img.into_raw()).map_err(|e| DecodeError::Decode(e.to_string()))
}

/// A PNG of `width` x `height` declared in its header but only a few hundred bytes long
/// (all zero rows, deflate-compressed): the image bomb the limits are for. Tests use it
/// on every input.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for b in bytes {
            crc ^= *b as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut out, b"IHDR", &ihdr);
    // A zlib stream of one empty stored block: the decoder finds too little data, but
    // only after it allocated the frame, which is what the limits prevent.
    chunk(&mut out, b"IDAT", &[0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_bytes_are_a_clear_error() {
        let e = decode_image(b"definitely not a jpeg").unwrap_err();
        assert!(e.to_string().contains("cannot decode image"), "{e}");
        let mut png = Vec::new();
        image::RgbImage::new(3, 2).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let img = decode_image(&png).unwrap();
        assert_eq!((img.width, img.height), (3, 2));
        let truncated = &png[..png.len() / 2];
        assert!(decode_image(truncated).is_err());
    }

    #[test]
    fn a_bomb_is_refused_from_its_header() {
        let bomb = png_bomb(8192, 8192);
        assert!(bomb.len() < 200, "{} bytes", bomb.len());
        let e = decode_image_limited(&bomb, ImageLimits::pixels(ImageLimits::DEFAULT_MAX_PIXELS)).unwrap_err();
        assert!(matches!(e, DecodeError::TooManyPixels { width: 8192, height: 8192, .. }), "{e}");
        assert!(e.to_string().contains("67108864 pixels") && e.to_string().contains("limits.max_frame_pixels"), "{e}");
        let e = decode_image_limited(&png_bomb(9000, 10), ImageLimits::pixels(u64::MAX)).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge { .. }), "{e}");
        // Within the limits it is just a broken PNG.
        let e = decode_image_limited(&png_bomb(64, 64), ImageLimits::pixels(ImageLimits::DEFAULT_MAX_PIXELS)).unwrap_err();
        assert!(matches!(e, DecodeError::Decode(_)), "{e}");
    }
}

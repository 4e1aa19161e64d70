//! Encoded images (JPEG, PNG) to RGB frames: for Kafka frames, uploads and files.

use super::RgbImage;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot decode image: {0} (JPEG and PNG are supported)")]
    Decode(String),
    #[error("image is {width}x{height}; the limit is {max} pixels on a side")]
    TooLarge { width: u32, height: u32, max: u32 },
}

/// Largest side accepted, to bound memory for a single request.
pub const MAX_SIDE: u32 = 8192;

/// Decodes JPEG/PNG bytes to RGB.
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    decode_image_within(bytes, MAX_SIDE)
}

/// Decodes JPEG/PNG bytes to RGB, refusing images with a side over `max_side` from their
/// header, before any pixel is decoded.
pub fn decode_image_within(bytes: &[u8], max_side: u32) -> Result<RgbImage, DecodeError> {
    let max_side = max_side.min(MAX_SIDE);
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| DecodeError::Decode(e.to_string()))?;
    let (w, h) = reader.into_dimensions().map_err(|e| DecodeError::Decode(e.to_string()))?;
    if w > max_side || h > max_side {
        return Err(DecodeError::TooLarge { width: w, height: h, max: max_side });
    }
    let img = image::load_from_memory(bytes).map_err(|e| DecodeError::Decode(e.to_string()))?.to_rgb8();
    let (w, h) = img.dimensions();
    RgbImage::new(w, h, img.into_raw()).map_err(|e| DecodeError::Decode(e.to_string()))
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
}

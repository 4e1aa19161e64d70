//! The clip encoder of `crate::evidence::clip` with GStreamer (kept in this module with
//! the rest of GStreamer): `appsrc(RGB) → videoconvert → videoscale → x264enc → mp4mux`.
//!
//! x264 runs `ultrafast` with `zerolatency` at constant quality on one thread, so a clip costs one core's
//! share at most and never buffers more than a frame or two; the profile is constrained
//! baseline, which every browser's `<video>` plays, and `mp4mux faststart` writes the
//! index first so playback starts before the whole file is read. The pipeline is set
//! back to Null on every path (finished, failed or dropped).

use std::path::Path;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use crate::evidence::clip::{ClipEncoder, ClipWriter};
use crate::model::RgbImage;

/// The GStreamer H.264/MP4 encoder.
pub struct GstClipEncoder;

/// x264's constant-quality level (its CRF): 0 lossless … 51 worst; 26 keeps faces and
/// plates of a 640-pixel view legible.
const QUALITY: u32 = 26;

/// How long finishing a clip may take (EOS through the encoder and muxer).
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// The encoded size: the longer side at most `max_side`, both even (4:2:0).
pub fn scaled_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let scale = (max_side as f64 / width.max(height) as f64).min(1.0);
    let even = |v: u32| ((((v as f64) * scale).round() as u32) & !1).max(2);
    (even(width), even(height))
}

impl ClipEncoder for GstClipEncoder {
    fn begin(&mut self, width: u32, height: u32, fps: f64, max_side: u32, out: &Path) -> Result<Box<dyn ClipWriter>, String> {
        gst::init().map_err(|e| format!("GStreamer: {e}"))?;
        let (w, h) = scaled_size(width, height, max_side);
        let rate = gst::Fraction::approximate_f64(fps).ok_or_else(|| format!("no frame rate for {fps}"))?;
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, width, height).fps(rate).build().map_err(|e| e.to_string())?;
        let src = gst_app::AppSrc::builder().caps(&info.to_caps().map_err(|e| e.to_string())?).format(gst::Format::Time).block(true).build();
        let make = |factory: &str| {
            gst::ElementFactory::make(factory)
                .build()
                .map_err(|_| format!("GStreamer element `{factory}` is missing (gstreamer1.0-plugins-ugly has x264enc, -good mp4mux)"))
        };
        let convert = make("videoconvert")?;
        let scale = make("videoscale")?;
        let raw = gst::ElementFactory::make("capsfilter")
            .property("caps", gst::Caps::builder("video/x-raw").field("format", "I420").field("width", w as i32).field("height", h as i32).build())
            .build()
            .map_err(|e| e.to_string())?;
        let x264 = make("x264enc")?;
        x264.set_property_from_str("speed-preset", "ultrafast");
        x264.set_property_from_str("tune", "zerolatency");
        x264.set_property("threads", 1u32);
        x264.set_property("key-int-max", ((fps * 2.0).round() as u32).max(1));
        // Constant quality (CRF-like) instead of x264enc's default 2 Mbit/s: a still scene
        // costs little, and a 15 s clip is a few hundred KiB, not 4 MB.
        x264.set_property_from_str("pass", "qual");
        x264.set_property("quantizer", QUALITY);
        let h264 = gst::ElementFactory::make("capsfilter")
            .property("caps", gst::Caps::builder("video/x-h264").field("profile", "constrained-baseline").build())
            .build()
            .map_err(|e| e.to_string())?;
        let mux = make("mp4mux")?;
        mux.set_property("faststart", true);
        let sink = make("filesink")?;
        sink.set_property("location", out.to_string_lossy().to_string());
        let pipeline = gst::Pipeline::new();
        let elements = [src.upcast_ref::<gst::Element>(), &convert, &scale, &raw, &x264, &h264, &mux, &sink];
        pipeline.add_many(elements).map_err(|e| e.to_string())?;
        gst::Element::link_many(elements).map_err(|e| format!("linking the clip pipeline: {e}"))?;
        let writer = GstClipWriter { pipeline, src, info, fps, size: (w, h) };
        writer.pipeline.set_state(gst::State::Playing).map_err(|e| format!("starting the clip pipeline: {e}"))?;
        Ok(Box::new(writer))
    }

    fn name(&self) -> &'static str {
        "x264enc"
    }
}

struct GstClipWriter {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    info: gst_video::VideoInfo,
    fps: f64,
    size: (u32, u32),
}

impl GstClipWriter {
    /// The first error on the bus, if any.
    fn bus_error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Some(format!("{} ({})", e.error(), e.debug().map(|d| d.to_string()).unwrap_or_default()));
            }
        }
        None
    }
}

impl ClipWriter for GstClipWriter {
    fn push(&mut self, frame: &RgbImage, index: u64) -> Result<(), String> {
        if let Some(e) = self.bus_error() {
            return Err(e);
        }
        let (w, h) = (frame.width as usize, frame.height as usize);
        let stride = self.info.stride()[0] as usize;
        // GStreamer's RGB rows are padded to 4 bytes; ours are packed.
        let data = if stride == w * 3 {
            frame.pixels.clone()
        } else {
            let mut padded = vec![0u8; stride * h];
            for (row, src) in padded.chunks_exact_mut(stride).zip(frame.pixels.chunks_exact(w * 3)) {
                row[..w * 3].copy_from_slice(src);
            }
            padded
        };
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let b = buffer.get_mut().expect("a new buffer is writable");
            let step = 1e9 / self.fps;
            b.set_pts(gst::ClockTime::from_nseconds((index as f64 * step) as u64));
            b.set_duration(gst::ClockTime::from_nseconds(step as u64));
        }
        self.src.push_buffer(buffer).map(|_| ()).map_err(|e| format!("the clip encoder refused a frame: {e:?}"))
    }

    fn finish(self: Box<Self>) -> Result<(u32, u32), String> {
        self.src.end_of_stream().map_err(|e| format!("ending the clip: {e:?}"))?;
        let bus = self.pipeline.bus().ok_or("the clip pipeline has no bus")?;
        // Drop sets the pipeline back to Null.
        match bus.timed_pop_filtered(gst::ClockTime::from_seconds(FINISH_TIMEOUT.as_secs()), &[gst::MessageType::Eos, gst::MessageType::Error]) {
            Some(msg) => match msg.view() {
                gst::MessageView::Eos(..) => Ok(self.size),
                gst::MessageView::Error(e) => Err(format!("{} ({})", e.error(), e.debug().map(|d| d.to_string()).unwrap_or_default())),
                _ => unreachable!("filtered"),
            },
            None => Err(format!("the clip did not finish within {FINISH_TIMEOUT:?}")),
        }
    }
}

impl Drop for GstClipWriter {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_even_and_never_scaled_up() {
        assert_eq!(scaled_size(768, 576, 640), (640, 480));
        assert_eq!(scaled_size(320, 240, 640), (320, 240));
        assert_eq!(scaled_size(321, 241, 640), (320, 240));
        assert_eq!(scaled_size(1920, 1080, 640), (640, 360));
        assert_eq!(scaled_size(1, 1, 640), (2, 2));
    }
}

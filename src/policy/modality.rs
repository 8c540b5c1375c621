//! Modality detection and the per-modality strategy (docs/MODALITY.md is the table in prose).
//!
//! Order of evidence: the config's `modality`, else the safetensors `__metadata__` key
//! `modality`, else tensor-name rules below, else "unknown" — never a silent "text". Each
//! rule is a substring that only one family of models uses in its parameter names; a modality
//! wins when at least two of its rules match some tensor and no other modality has as many.

use serde::{Deserialize, Serialize};

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Text,
    Code,
    Image,
    Audio,
}

impl Modality {
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Code => "code",
            Modality::Image => "image",
            Modality::Audio => "audio",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Some(Modality::Text),
            "code" => Some(Modality::Code),
            "image" => Some(Modality::Image),
            "audio" => Some(Modality::Audio),
            _ => None,
        }
    }
}

/// One piece of name evidence: which modality it points to, the model family, and the substring.
pub struct NameRule {
    pub modality: Modality,
    pub family: &'static str,
    pub needle: &'static str,
}

const fn rule(modality: Modality, family: &'static str, needle: &'static str) -> NameRule {
    NameRule { modality, family, needle }
}

/// Substrings matched against lower-cased tensor names.
pub const NAME_RULES: &[NameRule] = &[
    // diffusers UNet (SD, SDXL, DDPM)
    rule(Modality::Image, "diffusers UNet", "down_blocks."),
    rule(Modality::Image, "diffusers UNet", "up_blocks."),
    rule(Modality::Image, "diffusers UNet", "mid_block."),
    rule(Modality::Image, "diffusers UNet", "conv_in."),
    rule(Modality::Image, "diffusers UNet", "time_embedding."),
    // original latent-diffusion / SD checkpoints
    rule(Modality::Image, "LDM UNet", "input_blocks."),
    rule(Modality::Image, "LDM UNet", "output_blocks."),
    rule(Modality::Image, "LDM UNet", "middle_block."),
    // DiT / PixArt / SD3-style transformers
    rule(Modality::Image, "DiT", "x_embedder."),
    rule(Modality::Image, "DiT", "t_embedder."),
    rule(Modality::Image, "DiT", "adaln_modulation."),
    rule(Modality::Image, "DiT", "final_layer."),
    // vision encoders
    rule(Modality::Image, "ViT", "patch_embed."),
    rule(Modality::Image, "ViT", "vision_model."),
    // speech / audio
    rule(Modality::Audio, "wav2vec2/HuBERT", "feature_extractor.conv_layers."),
    rule(Modality::Audio, "wav2vec2/HuBERT", "feature_projection."),
    rule(Modality::Audio, "Whisper", "encoder.conv1."),
    rule(Modality::Audio, "Whisper", "encoder.conv2."),
    rule(Modality::Audio, "EnCodec/DAC", "quantizer."),
    rule(Modality::Audio, "audio (named)", "audio"),
    rule(Modality::Audio, "audio (named)", "mel_"),
    // text transformers (code models share these names: code comes only from metadata/config)
    rule(Modality::Text, "LLaMA/Mistral", "embed_tokens."),
    rule(Modality::Text, "LLaMA/Mistral", "self_attn.q_proj."),
    rule(Modality::Text, "LLaMA/Mistral", "mlp.gate_proj."),
    rule(Modality::Text, "BERT", "word_embeddings."),
    rule(Modality::Text, "BERT", "attention.self.query."),
    rule(Modality::Text, "GPT-2", "wte."),
    rule(Modality::Text, "GPT-2", "attn.c_attn."),
    rule(Modality::Text, "causal LM", "lm_head."),
    rule(Modality::Text, "CLIP text", "token_embedding."),
];

/// Where the modality came from and what decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub modality: Option<Modality>,
    /// "config", "metadata", "names" or "none".
    pub source: &'static str,
    /// The rule that fired, in words (shown in the report).
    pub rule: String,
}

impl Detection {
    /// The modality's name, or "unknown".
    pub fn name(&self) -> &'static str {
        self.modality.map_or("unknown", |m| m.as_str())
    }
}

pub fn detect<'a>(
    configured: Option<Modality>,
    metadata: Option<&str>,
    names: impl IntoIterator<Item = &'a str>,
) -> Detection {
    if let Some(m) = configured {
        return Detection { modality: Some(m), source: "config", rule: format!("config modality = '{}'", m.as_str()) };
    }
    if let Some(raw) = metadata {
        if let Some(m) = Modality::parse(raw) {
            return Detection {
                modality: Some(m),
                source: "metadata",
                rule: format!("safetensors __metadata__.modality = '{raw}'"),
            };
        }
    }
    let mut hit = vec![false; NAME_RULES.len()];
    for name in names {
        let lower = name.to_ascii_lowercase();
        for (i, r) in NAME_RULES.iter().enumerate() {
            if !hit[i] && lower.contains(r.needle) {
                hit[i] = true;
            }
        }
    }
    let score = |m: Modality| NAME_RULES.iter().zip(&hit).filter(|(r, h)| **h && r.modality == m).count();
    let mut scored: Vec<(Modality, usize)> =
        [Modality::Image, Modality::Audio, Modality::Text].iter().map(|&m| (m, score(m))).collect();
    scored.sort_by_key(|s| std::cmp::Reverse(s.1));
    let (best, n) = scored[0];
    let evidence = |m: Modality| -> String {
        NAME_RULES
            .iter()
            .zip(&hit)
            .filter(|(r, h)| **h && r.modality == m)
            .map(|(r, _)| format!("'{}' ({})", r.needle, r.family))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if n >= 2 && scored[1].1 < n {
        Detection {
            modality: Some(best),
            source: "names",
            rule: format!("tensor names: {n} {} rule(s) matched: {}", best.as_str(), evidence(best)),
        }
    } else if n == 0 {
        Detection { modality: None, source: "none", rule: "no metadata and no tensor-name rule matched".to_string() }
    } else {
        let tied: Vec<String> =
            scored.iter().filter(|(_, k)| *k > 0).map(|(m, k)| format!("{} {k}", m.as_str())).collect();
        Detection {
            modality: None,
            source: "none",
            rule: format!(
                "tensor names inconclusive (rules matched: {}; a modality needs ≥ 2 and a clear lead)",
                tied.join(", ")
            ),
        }
    }
}

/// Sensitive-layer patterns every modality uses (norm weights are 1-D and stored exactly anyway;
/// these catch 2-D norm-like parameters).
pub const GENERIC_SENSITIVE: &[&str] = &["*norm*", "*.ln_*"];

/// The per-modality part of the strategy: layers whose errors propagate through the whole
/// network (embeddings, output heads, time-embedding MLPs, the first and last convolution of a
/// UNet) are kept at `sensitiveBits`.
pub fn sensitive_patterns(modality: Option<Modality>) -> &'static [&'static str] {
    match modality {
        Some(Modality::Image) => &[
            "conv_in.*",
            "*.conv_in.*",
            "conv_out.*",
            "*.conv_out.*",
            "*time_embedding.*",
            "*time_embed.*",
            "*t_embedder.*",
            "*x_embedder.*",
            "*final_layer.*",
            "*class_embedding.*",
            "*label_emb.*",
            "*input_blocks.0.0.*",
            "*diffusion_model.out.2.*",
        ],
        Some(Modality::Text) | Some(Modality::Code) => &[
            "*embed_tokens.*",
            "*word_embeddings.*",
            "*position_embeddings.*",
            "*token_type_embeddings.*",
            "*wte.*",
            "*wpe.*",
            "*token_embedding.*",
            "lm_head.*",
            "*.lm_head.*",
        ],
        Some(Modality::Audio) => &[
            "*feature_extractor.conv_layers.0.*",
            "*encoder.conv1.*",
            "*embed_positions.*",
            "*embed_tokens.*",
            "lm_head.*",
            "*.lm_head.*",
            "*proj_out.*",
        ],
        None => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &[&'static str]) -> Vec<&'static str> {
        s.to_vec()
    }

    #[test]
    fn unet_dit_text_audio_and_unknown() {
        let unet = names(&[
            "conv_in.weight",
            "time_embedding.linear_1.weight",
            "down_blocks.0.resnets.0.conv1.weight",
            "up_blocks.1.attentions.0.to_q.weight",
            "mid_block.resnets.0.conv1.weight",
        ]);
        let d = detect(None, None, unet.iter().copied());
        assert_eq!((d.modality, d.source), (Some(Modality::Image), "names"));
        assert!(d.rule.contains("down_blocks."), "{}", d.rule);
        let ldm = names(&[
            "model.diffusion_model.input_blocks.0.0.weight",
            "model.diffusion_model.middle_block.1.proj_in.weight",
            "model.diffusion_model.output_blocks.2.1.conv.weight",
            "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
        ]);
        assert_eq!(detect(None, None, ldm.iter().copied()).modality, Some(Modality::Image));
        let dit = names(&[
            "x_embedder.proj.weight",
            "t_embedder.mlp.0.weight",
            "blocks.0.adaLN_modulation.1.weight",
            "final_layer.linear.weight",
        ]);
        assert_eq!(detect(None, None, dit.iter().copied()).modality, Some(Modality::Image));
        let llama = names(&["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "lm_head.weight"]);
        assert_eq!(detect(None, None, llama.iter().copied()).modality, Some(Modality::Text));
        let bert = names(&[
            "embeddings.word_embeddings.weight",
            "encoder.layer.0.attention.self.query.weight",
            "encoder.layer.0.attention.output.LayerNorm.weight",
        ]);
        assert_eq!(detect(None, None, bert.iter().copied()).modality, Some(Modality::Text));
        let w2v = names(&[
            "wav2vec2.feature_extractor.conv_layers.0.conv.weight",
            "wav2vec2.feature_projection.projection.weight",
            "wav2vec2.encoder.layers.0.attention.q_proj.weight",
        ]);
        assert_eq!(detect(None, None, w2v.iter().copied()).modality, Some(Modality::Audio));
        let whisper =
            names(&["model.encoder.conv1.weight", "model.encoder.conv2.weight", "model.decoder.embed_tokens.weight"]);
        assert_eq!(detect(None, None, whisper.iter().copied()).modality, Some(Modality::Audio));
        let plain = names(&["encoder.0.weight", "decoder.3.weight"]);
        let d = detect(None, None, plain.iter().copied());
        assert_eq!((d.modality, d.source), (None, "none"));
        // one lone rule is not enough
        assert_eq!(detect(None, None, ["lm_head.weight"].into_iter()).modality, None);
    }

    #[test]
    fn config_beats_metadata_beats_names() {
        let unet = ["down_blocks.0.x", "up_blocks.0.x"];
        assert_eq!(detect(Some(Modality::Code), Some("audio"), unet).source, "config");
        let d = detect(None, Some("audio"), unet);
        assert_eq!((d.modality, d.source), (Some(Modality::Audio), "metadata"));
        // unreadable metadata falls through to names
        assert_eq!(detect(None, Some("video"), unet).modality, Some(Modality::Image));
    }

    #[test]
    fn default_patterns_match_real_names() {
        use crate::policy::glob::glob_match;
        let hits = |m: Option<Modality>, name: &str| sensitive_patterns(m).iter().any(|p| glob_match(p, name));
        let img = Some(Modality::Image);
        assert!(hits(img, "conv_in.weight"));
        assert!(hits(img, "conv_out.weight"));
        assert!(hits(img, "time_embedding.linear_1.weight"));
        assert!(hits(img, "model.diffusion_model.time_embed.0.weight"));
        assert!(hits(img, "t_embedder.mlp.0.weight"));
        assert!(!hits(img, "down_blocks.0.resnets.0.conv1.weight"));
        assert!(!hits(img, "down_blocks.0.resnets.0.time_emb_proj.weight"));
        let txt = Some(Modality::Text);
        assert!(hits(txt, "model.embed_tokens.weight"));
        assert!(hits(txt, "lm_head.weight"));
        assert!(hits(txt, "embeddings.word_embeddings.weight"));
        assert!(!hits(txt, "model.layers.0.mlp.down_proj.weight"));
    }
}

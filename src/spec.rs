//! The YAML spec (`--spec repair.yaml`), versioned, unknown keys rejected.
//!
//! Today it holds the `input` section (how images become model input, docs/data.md); the
//! repair's own sections (data sources, collect, localize, search, train, validate, gate,
//! report) join it with the main command. YAML parsing stays behind [`Spec::from_yaml`] so the
//! YAML crate can be swapped in one place.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::data::InputSpec;

/// The only spec version this build reads.
pub const SPEC_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Must be 1.
    pub version: u32,
    #[serde(default)]
    pub input: InputSpec,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read spec `{path}`: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("spec `{path}`: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl Spec {
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read { path: path.to_path_buf(), source })?;
        Spec::from_yaml(&text).map_err(|reason| SpecError::Invalid { path: path.to_path_buf(), reason })
    }

    /// Parses and checks the version; the error says which key or line is wrong.
    pub fn from_yaml(text: &str) -> Result<Spec, String> {
        let spec: Spec = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        if spec.version != SPEC_VERSION {
            return Err(format!("version: {} is not supported; this build reads `version: {SPEC_VERSION}`", spec.version));
        }
        Ok(spec)
    }
}

impl InputSpec {
    /// These settings, with every key that `overrides` sets taken from it (command-line flags
    /// override the spec).
    pub fn overridden_by(self, overrides: InputSpec) -> InputSpec {
        InputSpec {
            layout: overrides.layout.or(self.layout),
            channels: overrides.channels.or(self.channels),
            size: overrides.size.or(self.size),
            scale: overrides.scale.or(self.scale),
            mean: overrides.mean.or(self.mean),
            std: overrides.std.or(self.std),
            fit: overrides.fit.or(self.fit),
            grey_to_rgb: overrides.grey_to_rgb.or(self.grey_to_rgb),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Fit, Layout};

    #[test]
    fn input_section_parses_and_flags_override_it() {
        let spec = Spec::from_yaml("version: 1\ninput:\n  layout: nchw\n  fit: pad\n  mean: [0.5]\n  std: [0.25]\n").unwrap();
        assert_eq!(spec.input.fit, Some(Fit::Pad));
        let merged = spec.input.overridden_by(InputSpec { fit: Some(Fit::Resize), ..InputSpec::default() });
        assert_eq!((merged.fit, merged.layout, merged.mean), (Some(Fit::Resize), Some(Layout::Nchw), Some(vec![0.5])));
    }

    #[test]
    fn unknown_keys_wrong_versions_and_bad_values_are_refused_with_the_key() {
        let unknown = Spec::from_yaml("version: 1\ninput:\n  layuot: nchw\n").unwrap_err();
        assert!(unknown.contains("layuot") && unknown.contains("layout"), "{unknown}");
        assert!(Spec::from_yaml("version: 2\n").unwrap_err().contains("version: 2"));
        assert!(Spec::from_yaml("input: {}\n").unwrap_err().contains("version"));
        let bad = Spec::from_yaml("version: 1\ninput:\n  fit: stretch\n").unwrap_err();
        assert!(bad.contains("stretch"), "{bad}");
    }
}

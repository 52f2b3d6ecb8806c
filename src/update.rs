//! `appliance self-update [--check]`: replace this binary with a newer release
//! from GitHub releases (`[update].repo`, API at `[update].api_url`), only if
//! the release artifact carries a zipsign signature by one of
//! `[update].public_keys`.
//!
//! Refusals, each before anything is downloaded:
//! - the binary belongs to a Debian package (dpkg lists it): apt upgrades it;
//! - no release signing key is configured;
//! - no release is strictly newer (semver) than this one: never a downgrade.
//!
//! Then the `self_update` crate downloads the artifact for this target
//! (`appliance-<version>-<target>.tar.gz`), verifies its signature, extracts
//! `appliance` and swaps it in with an atomic rename beside the running binary.
//! A bad or missing signature leaves the binary untouched.
//!
//! Blocking (the crate's API is sync, with its own HTTP client): call it from
//! the synchronous CLI, never from inside the tokio runtime.

use crate::config::Update;
use anyhow::{Context, bail};
use self_update::zipsign_api;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Where dpkg keeps one `<package>.list` file per installed package.
pub const DPKG_INFO_DIR: &str = "/var/lib/dpkg/info";

/// Test hook: overrides [`DPKG_INFO_DIR`] so an integration test can make the
/// real binary believe it was installed by a package. Not meant for users.
pub const DPKG_INFO_DIR_ENV: &str = "APPLIANCE_DPKG_INFO_DIR";

const BIN_NAME: &str = "appliance";

/// Per HTTP request (the release listing, the artifact download).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Check for (and unless `check_only`, install) a newer signed release; a
/// one-line summary of what happened.
pub fn self_update(cfg: &Update, check_only: bool) -> anyhow::Result<String> {
    let current = env!("CARGO_PKG_VERSION");
    let exe = std::env::current_exe().context("cannot locate the running binary")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let dpkg_dir = std::env::var_os(DPKG_INFO_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DPKG_INFO_DIR));
    if let Some(pkg) = managed_by_package(&exe, &dpkg_dir) {
        bail!(
            "{BIN_NAME} was installed by the Debian package `{pkg}`; upgrade it with apt \
             (sudo apt update && sudo apt install {pkg})"
        );
    }
    let keys = verifying_keys(&cfg.public_keys)?;
    let (owner, name) = cfg
        .repo
        .split_once('/')
        .with_context(|| format!("update.repo {:?} is not OWNER/NAME", cfg.repo))?;
    let target = self_update::get_target();

    let mut builder = self_update::backends::github::Update::configure();
    builder
        .api_base_url(cfg.api_url.trim_end_matches('/'))
        .repo_owner(owner)
        .repo_name(name)
        .bin_name(BIN_NAME)
        .bin_install_path(&exe)
        .target(target)
        .current_version(current)
        .verifying_keys(keys.clone())
        // Among the strictly newer releases, the newest (a major bump too).
        .update_strategy(self_update::UpdateStrategy::Latest)
        .no_confirm(true)
        .show_output(false)
        .show_download_progress(false)
        .check_install_path_writable(true)
        .timeout(REQUEST_TIMEOUT);

    // Choose the release here, explicitly: the newest one whose version is
    // strictly greater than ours. The crate applies the same rule; this makes
    // "never a downgrade" ours, not an implementation detail of a dependency.
    let listing = builder
        .build()
        .context("self-update setup")?
        .get_newer_releases()
        .with_context(|| {
            format!(
                "cannot list the releases of {} at {}",
                cfg.repo, cfg.api_url
            )
        })?;
    let Some(release) = newest_above(listing.all(), current) else {
        return Ok(format!("{BIN_NAME} {current} is up to date"));
    };
    let version = release.version().to_string();
    let Some(asset) = release.asset_for(target, None) else {
        bail!(
            "release {version} of {} has no artifact for {target} (expected a name like {BIN_NAME}-{version}-{target}.tar.gz)",
            cfg.repo
        );
    };
    if check_only {
        return Ok(format!("update available: {current} -> {version}"));
    }

    // Install exactly the artifact chosen above: if the listing changed in
    // between, the crate picks another release and this matcher refuses it.
    let pinned = asset.download_url().to_string();
    builder
        .asset_matcher(move |assets| assets.iter().find(|a| a.download_url() == pinned).cloned());
    // The crate has verified the signature when this hook runs; verifying
    // again tells which key signed, and would refuse if it had not.
    let signed_by = Arc::new(AtomicUsize::new(0));
    {
        let signed_by = signed_by.clone();
        let keys = keys.clone();
        builder.verify_archive(move |archive| {
            let n = signer(archive, &keys)
                .map_err(self_update::Error::archive_verification_rejected)?;
            signed_by.store(n, Ordering::SeqCst);
            Ok(())
        });
    }
    let status = builder
        .build()
        .context("self-update setup")?
        .update_extended()
        .map_err(|e| refusal(e, asset.name()))?;
    let Some(installed) = status.updated_release() else {
        return Ok(format!("{BIN_NAME} {current} is up to date"));
    };
    if installed.version() != version {
        // Unreachable with the matcher above; never report a version we did not choose.
        bail!(
            "installed release {} instead of {version}; check the binary",
            installed.version()
        );
    }
    Ok(format!(
        "updated {current} -> {version} (signature verified with key #{})",
        signed_by.load(Ordering::SeqCst)
    ))
}

/// The newest release strictly newer (semver) than `current`; pre-release
/// tags count if their version is greater.
fn newest_above<'a>(
    releases: &'a [self_update::Release],
    current: &str,
) -> Option<&'a self_update::Release> {
    use self_update::version::{bump_is_greater, cmp_versions};
    releases
        .iter()
        .filter(|r| bump_is_greater(current, r.version()).unwrap_or(false))
        .max_by(|a, b| cmp_versions(a.version(), b.version()).unwrap_or(std::cmp::Ordering::Equal))
}

/// `[update].public_keys` as raw Ed25519 keys; refuses an empty list.
fn verifying_keys(keys: &[String]) -> anyhow::Result<Vec<self_update::VerifyingKey>> {
    use base64::Engine;
    if keys.is_empty() {
        bail!(
            "no release signing key configured: set [update].public_keys to the release \
             signers' Ed25519 public keys (base64); self-update never installs an unverified binary"
        );
    }
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(k.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .filter(|b| zipsign_api::VerifyingKey::from_bytes(b).is_ok());
            bytes.with_context(|| {
                format!("update.public_keys[{i}] is not an Ed25519 public key (32 bytes, base64)")
            })
        })
        .collect()
}

/// Which of `keys` (1-based) signed the `.tar.gz` at `archive`; zipsign binds
/// the signature to the file name, which is the release asset's name.
fn signer(archive: &Path, keys: &[self_update::VerifyingKey]) -> Result<usize, String> {
    let context = archive
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("artifact name is not UTF-8")?;
    let keys = zipsign_api::verify::collect_keys(keys.iter().copied().map(Ok))
        .map_err(|e| e.to_string())?;
    let mut file = std::fs::File::open(archive).map_err(|e| e.to_string())?;
    zipsign_api::verify::verify_tar(&mut file, &keys, Some(context.as_bytes()))
        .map(|i| i + 1)
        .map_err(|e| e.to_string())
}

/// A signature failure as a plain refusal; anything else with context.
fn refusal(e: self_update::Error, asset: &str) -> anyhow::Error {
    use self_update::Error as E;
    match e {
        E::Signature(_)
        | E::NoSignatures(_)
        | E::SignatureNonUTF8
        | E::ArchiveVerificationRejected { .. } => anyhow::anyhow!(
            "refused {asset}: it is not signed by a configured release key, or was changed after \
             signing ({e}); nothing was installed"
        ),
        e => anyhow::Error::new(e).context("self-update failed; the binary is unchanged"),
    }
}

/// The Debian package that owns `exe`, if any: a `<package>.list` file in
/// dpkg's info directory (normally [`DPKG_INFO_DIR`]) lists it, directly or
/// through a symlinked directory (`/bin` -> `/usr/bin` on merged-/usr systems).
pub fn managed_by_package(exe: &Path, dpkg_info_dir: &Path) -> Option<String> {
    let name = exe.file_name()?.as_bytes();
    let canonical = exe.canonicalize().ok();
    let mut lists: Vec<PathBuf> = std::fs::read_dir(dpkg_info_dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "list"))
        .collect();
    lists.sort();
    for list in lists {
        let Ok(text) = std::fs::read(&list) else {
            continue;
        };
        let owns = text.split(|b| *b == b'\n').any(|line| {
            let listed = Path::new(std::ffi::OsStr::from_bytes(line));
            listed == exe
                || (listed.file_name().is_some_and(|n| n.as_bytes() == name)
                    && canonical.is_some()
                    && listed.canonicalize().ok() == canonical)
        });
        if owns {
            // Multi-arch packages have lists named `<package>:<arch>.list`.
            let stem = list.file_stem()?.to_string_lossy();
            return Some(stem.split(':').next().unwrap_or(&stem).to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_required_and_checked() {
        let err = verifying_keys(&[]).unwrap_err().to_string();
        assert!(err.contains("no release signing key configured"), "{err}");
        let err = verifying_keys(&["AAAA".into()]).unwrap_err().to_string();
        assert!(err.contains("public_keys[0]"), "{err}");
        let key = zipsign_api::SigningKey::from_bytes(&[7; 32]).verifying_key();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.to_bytes());
        assert_eq!(verifying_keys(&[b64]).unwrap(), vec![key.to_bytes()]);
    }

    #[test]
    fn only_strictly_newer_releases_are_chosen() {
        let rel = |v: &str| self_update::Release::builder().version(v).build().unwrap();
        let all = [rel("0.0.1"), rel("0.1.0"), rel("0.3.0"), rel("0.2.5")];
        assert_eq!(newest_above(&all, "0.1.0").unwrap().version(), "0.3.0");
        assert!(newest_above(&all, "0.3.0").is_none());
        assert!(newest_above(&all[..2], "0.1.0").is_none());
    }
}

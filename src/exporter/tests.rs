//! The bytes the exporter writes: image config (history times, rootfs,
//! `SOURCE_DATE_EPOCH`), manifest and index, pinned so a change of
//! serialisation (and so of every digest) cannot pass unnoticed.

use super::*;
use crate::graph::{History, HistoryStep};
use kiln_snapshotter::SnapshotId;

fn layer(content: &str, created: i64) -> LayerRecord {
    LayerRecord {
        snapshot: Some(SnapshotId::random()),
        digest: Digest::of(format!("gz:{content}").as_bytes()),
        diff_id: Digest::of(content.as_bytes()),
        size: content.len() as u64,
        media_type: MediaType::OCI_LAYER_GZIP.into(),
        created,
        origin: None,
    }
}

fn step(created_by: &str, node: Option<usize>, from_base: bool) -> HistoryStep {
    let entry = History {
        created: from_base.then(|| "2020-01-01T00:00:00Z".to_string()),
        created_by: Some(created_by.into()),
        comment: None,
        empty_layer: node.is_none(),
    };
    HistoryStep { entry, node, from_base }
}

/// A base image with one layer, then RUN (layer), ENV (none), COPY (layer).
fn build() -> (ImageConfig, Vec<HistoryStep>, Vec<LayerRecord>) {
    let config = ImageConfig { architecture: "amd64".into(), os: "linux".into(), ..Default::default() };
    let history = vec![
        step("base", Some(0), true),
        step("RUN make", Some(1), false),
        step("ENV A=1", None, false),
        step("COPY . /app", Some(2), false),
    ];
    let layers = vec![layer("base", 0), layer("run", 1_700_000_000), layer("copy", 1_700_000_100)];
    (config, history, layers)
}

#[test]
fn history_times_come_from_the_layers_and_base_entries_keep_theirs() {
    let (config, history, layers) = build();
    let out = image_config(&config, &history, &layers, None);
    let times: Vec<Option<&str>> = out.history.iter().map(|h| h.created.as_deref()).collect();
    assert_eq!(
        times,
        [
            Some("2020-01-01T00:00:00Z"),
            Some("2023-11-14T22:13:20Z"),
            Some("2023-11-14T22:13:20Z"),
            Some("2023-11-14T22:15:00Z")
        ],
        "a layer-less entry takes the time of the layer before it"
    );
    assert_eq!(out.created.as_deref(), Some("2023-11-14T22:15:00Z"), "the newest layer's time");
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    assert_eq!(out.rootfs.diff_ids, diff_ids);
}

#[test]
fn source_date_epoch_replaces_every_new_time_but_not_the_base_ones() {
    let (config, history, layers) = build();
    let out = image_config(&config, &history, &layers, Some(0));
    assert_eq!(out.created.as_deref(), Some("1970-01-01T00:00:00Z"));
    assert_eq!(out.history[0].created.as_deref(), Some("2020-01-01T00:00:00Z"));
    assert!(out.history[1..].iter().all(|h| h.created.as_deref() == Some("1970-01-01T00:00:00Z")));
}

#[test]
fn an_image_without_new_layers_keeps_its_base_time_or_takes_the_epoch() {
    let config = ImageConfig { created: Some("2021-05-05T00:00:00Z".into()), ..Default::default() };
    let out = image_config(&config, &[], &[], None);
    assert_eq!(out.created.as_deref(), Some("2021-05-05T00:00:00Z"));
    let out = image_config(&ImageConfig::default(), &[], &[], Some(86_400));
    assert_eq!(out.created.as_deref(), Some("1970-01-02T00:00:00Z"));
}

#[test]
fn the_config_is_the_same_bytes_for_the_same_inputs() {
    let (config, history, layers) = build();
    let a = serde_json::to_vec(&image_config(&config, &history, &layers, None)).unwrap();
    let b = serde_json::to_vec(&image_config(&config, &history, &layers, None)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn the_manifest_bytes_are_pinned() {
    let layers = [layer("run", 1)];
    let config = Digest::of(b"config");
    let bytes = manifest(&config, 42, &layers, 0, None);
    let expected = format!(
        concat!(
            r#"{{"config":{{"digest":"{}","mediaType":"application/vnd.oci.image.config.v1+json","size":42}},"#,
            r#""layers":[{{"digest":"{}","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":3}}],"#,
            r#""mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}}"#
        ),
        config, layers[0].digest
    );
    assert_eq!(String::from_utf8(bytes).unwrap(), expected);
}

#[test]
fn layers_the_build_made_carry_the_epoch_they_were_clamped_to_and_base_layers_do_not() {
    let layers = [layer("base", 1), layer("run", 2)];
    let bytes = manifest(&Digest::of(b"config"), 42, &layers, 1, Some(1_700_000_001));
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(m["layers"][0].get("annotations").is_none(), "a base layer is as it was pulled");
    assert_eq!(m["layers"][1]["annotations"][REWRITTEN_TIMESTAMP], "1700000001");
    assert!(String::from_utf8(bytes)
        .unwrap()
        .contains(r#"{"annotations":{"buildkit/rewritten-timestamp":"1700000001"},"digest""#));
    let unclamped: serde_json::Value =
        serde_json::from_slice(&manifest(&Digest::of(b"config"), 42, &layers, 1, None)).unwrap();
    assert!(unclamped["layers"][1].get("annotations").is_none(), "no epoch, no claim");
}

#[test]
fn the_index_bytes_are_pinned_with_platforms_in_order() {
    let exported =
        |m: &str| Exported { manifest: Digest::of(m.as_bytes()), manifest_size: 100, pushed_bytes: 0, unseen: false };
    let images = [
        (Platform::parse("linux/amd64").unwrap(), exported("a")),
        (Platform::parse("linux/arm/v7").unwrap(), exported("b")),
    ];
    let text = String::from_utf8(index(&images, &[])).unwrap();
    let expected = format!(
        concat!(
            r#"{{"manifests":[{{"digest":"{}","mediaType":"application/vnd.oci.image.manifest.v1+json","#,
            r#""platform":{{"architecture":"amd64","os":"linux"}},"size":100}},"#,
            r#"{{"digest":"{}","mediaType":"application/vnd.oci.image.manifest.v1+json","#,
            r#""platform":{{"architecture":"arm","os":"linux","variant":"v7"}},"size":100}}],"#,
            r#""mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}}"#
        ),
        images[0].1.manifest, images[1].1.manifest
    );
    assert_eq!(text, expected);
}

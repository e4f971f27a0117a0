//! Two builds that reach the same step at the same time run it once: the
//! step appends to a file on a shared cache mount, and the file ends up with
//! one line.

mod support;

use serde_json::json;
use support::*;

#[test]
fn concurrent_builds_share_one_run_of_a_step() {
    let server = Server::start(ServerOptions::default());
    let id = unique("dedup");
    let dockerfile = format!(
        "FROM {}/busybox\n\
         RUN --mount=type=cache,target=/c,id={id} echo ran >> /c/log && sleep 2\n\
         RUN --mount=type=cache,target=/c,id={id} wc -l < /c/log > /count\n",
        registry()
    );
    // Two tags of one repository: one tenant, whose cache mount they share.
    let repo = format!("{}/{}", registry(), unique("kiln/dedup"));
    let images: Vec<String> = (0..2).map(|i| format!("{repo}:{i}")).collect();
    let replies: Vec<serde_json::Value> = std::thread::scope(|s| {
        let builds: Vec<_> = images
            .iter()
            .map(|image| {
                let (server, dockerfile) = (&server, &dockerfile);
                s.spawn(move || {
                    let (status, reply) =
                        server.build(&request_tar(&json!({"image": image}), &[("Dockerfile", dockerfile.as_bytes())]));
                    assert_success(status, &reply);
                    reply
                })
            })
            .collect();
        builds.into_iter().map(|b| b.join().unwrap()).collect()
    });
    let ran: usize = replies.iter().map(executed_runs).sum();
    assert_eq!(ran, 2, "each of the two steps ran once across both builds");
    for image in &images {
        let img = unpack_image(image, None);
        assert_eq!(std::fs::read_to_string(img.rootfs.join("count")).unwrap().trim(), "1", "the step ran once");
    }
}

//! Embeds the channel specs (`<workspace>/channels/<channel>/<format>.toml`).
fn main() {
    ariane_embed::embed_files("channels", "toml", true, ariane_embed::Names::FromRoot, "channel_specs.rs");
}

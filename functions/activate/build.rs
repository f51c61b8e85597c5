//! Embeds the campaign library (`<workspace>/campaigns/*.toml`).
fn main() {
    ariane_embed::embed_files("campaigns", "toml", false, ariane_embed::Names::FileName, "campaign_files.rs");
}

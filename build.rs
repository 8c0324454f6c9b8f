// `sqlx::migrate!` embeds migrations/ at compile time; a proc macro cannot
// see a newly added file, so rebuild when the directory changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

fn main() {
    std::process::exit(backupctl::run(std::env::args_os()));
}

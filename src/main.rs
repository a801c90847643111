fn main() -> std::process::ExitCode {
    llmclis::run()
}
